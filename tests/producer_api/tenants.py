"""An API with keys, and a worker, on fresh topics: two tenants and the keys that test them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.keys import Scope, new_key, read_keys, revoke, write_keys
from tests.kafka import Deployment
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment

# name → (tenant, scopes); "revoked" is written revoked.
KEYS = {
    "acme": ("acme", "submit,read"),
    "bravo": ("bravo", "submit,read"),
    "carol": ("carol", "submit,read"),
    "dave": ("dave", "submit,read"),
    "acme-submit": ("acme", "submit"),
    "admin": ("ops", "admin,read"),
    "everything": ("ops", "submit,read,admin"),
    "revoked": ("acme", "submit,read"),
}


@dataclass
class Keyed:
    """The running stack, its keys file and a key per name of ``KEYS``."""

    api: ApiStack
    deployment: Deployment
    keys_file: Path
    keys: dict[str, str] = field(default_factory=dict)

    def add(self, tenant: str, scopes: str) -> str:
        """A new key written to the file (the API picks it up within keys_refresh_s)."""
        token, stored = new_key(tenant, frozenset(Scope(s) for s in scopes.split(",")))
        write_keys(self.keys_file, [*read_keys(self.keys_file), stored])
        return token


@contextlib.contextmanager
def keyed_stack(bootstrap: str, directory: Path, **overrides: Any) -> Iterator[Keyed]:
    """An API with the ``KEYS`` (and ``overrides``) and a worker, serving until the block
    ends."""
    keys_file = directory / "keys.json"
    tokens: dict[str, str] = {}
    stored = []
    for name, (tenant, scopes) in KEYS.items():
        token, key = new_key(tenant, frozenset(Scope(s) for s in scopes.split(",")), name)
        tokens[name] = token
        stored.append(key)
    revoked = next(k.id for k in stored if k.name == "revoked")
    write_keys(keys_file, revoke(stored, revoked))
    dep = new_deployment(bootstrap)
    settings = api_settings(dep, **{"api_keys_file": keys_file, "keys_refresh_s": 0.1,
                                    "ws_auth_timeout_s": 1.0, **overrides})
    with ApiStack(settings, dep.worker_settings()) as api:
        yield Keyed(api, dep, keys_file, tokens)
