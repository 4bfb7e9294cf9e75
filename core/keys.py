"""API keys: what a key looks like, how it is stored, and how one is checked.

A key is ``csk_<key id>_<secret>``: a 12-character public id (it names the key in logs and in
``calcstream keys list``) and a 43-character secret, 256 random bits. The keys file stores, per
key, its id, tenant, scopes, the SHA-256 of its secret and whether it is revoked; never the
secret. SHA-256 rather than a slow password hash: a 256-bit random secret cannot be guessed
from its digest whatever the hash costs, while bcrypt or Argon2 would cost milliseconds of CPU
on every request. Secrets are compared with ``hmac.compare_digest`` (constant time), and an
unknown key id is compared against a dummy digest, so a wrong key takes as long as a right one.

The file is JSON, ``{"keys": [{...}, ...]}``, written whole and atomically (a temporary file
renamed over it) with mode 0600; ``calcstream keys`` edits it, the API re-reads it when it
changes (``KeyRing.refresh``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import orjson

from schemas.messages import is_tenant

PREFIX = "csk_"
_ID_LENGTH = 12
_DUMMY = hashlib.sha256(b"calcstream: no such key").hexdigest()


class Scope(StrEnum):
    """What a key may do."""

    SUBMIT = "submit"  # POST calculations (one, a batch, over the WebSocket); ?wait= included
    READ = "read"  # GET a calculation, watch ids and the tenant's stream on the WebSocket
    ADMIN = "admin"  # /v1/stats, /metrics, the dashboard's data, every tenant's stream


class KeyFileError(ValueError):
    """The keys file cannot be read as keys."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as stored: everything but its secret."""

    id: str
    tenant: str
    scopes: frozenset[Scope]
    digest: str
    created_at: float
    revoked_at: float | None = None
    name: str = ""

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def document(self) -> dict[str, object]:
        """The key's entry in the keys file."""
        return {"id": self.id, "tenant": self.tenant, "scopes": sorted(self.scopes),
                "sha256": self.digest, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "name": self.name}

    @classmethod
    def from_document(cls, doc: object) -> ApiKey:
        """A key from its entry in the keys file; ``KeyFileError`` if malformed."""
        if not isinstance(doc, dict):
            raise KeyFileError("each key must be a JSON object")
        try:
            key = cls(id=str(doc["id"]), tenant=str(doc["tenant"]),
                      scopes=frozenset(Scope(s) for s in doc["scopes"]),
                      digest=str(doc["sha256"]), created_at=float(doc["created_at"]),
                      revoked_at=(None if doc.get("revoked_at") is None
                                  else float(doc["revoked_at"])),
                      name=str(doc.get("name") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyFileError(f"a key entry is malformed: {exc!r}") from None
        if not is_tenant(key.tenant):
            raise KeyFileError(f"key {key.id}: {key.tenant!r} is not a tenant name")
        return key


def digest(secret: str) -> str:
    """What the keys file stores of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or len(key_id) != _ID_LENGTH or not secret:
        return None
    return key_id, secret


def new_key(tenant: str, scopes: frozenset[Scope], name: str = "",
            now: float | None = None) -> tuple[str, ApiKey]:
    """A fresh key: (the key to hand out once, what is stored of it)."""
    if not is_tenant(tenant):
        raise ValueError(f"{tenant!r} is not a tenant name (1-64 of A-Z a-z 0-9 . _ -)")
    if not scopes:
        raise ValueError("a key needs at least one scope")
    key_id = secrets.token_hex(_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    stored = ApiKey(key_id, tenant, scopes, digest(secret),
                    time.time() if now is None else now, name=name)
    return f"{PREFIX}{key_id}_{secret}", stored


def read_keys(path: Path) -> list[ApiKey]:
    """Every key in the file (revoked ones included); ``KeyFileError`` if unreadable."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, orjson.JSONDecodeError) as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise KeyFileError(f'{path}: expected {{"keys": [...]}}')
    return [ApiKey.from_document(entry) for entry in entries]


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file's keys, atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps({"keys": [k.document() for k in keys]}, option=orjson.OPT_INDENT_2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def revoke(keys: list[ApiKey], key_id: str, now: float | None = None) -> list[ApiKey]:
    """The keys with ``key_id`` revoked; ``KeyError`` if there is no such key."""
    if not any(k.id == key_id for k in keys):
        raise KeyError(key_id)
    when = time.time() if now is None else now
    return [replace(k, revoked_at=when) if k.id == key_id and k.active else k for k in keys]


class KeyRing:
    """The active keys of a keys file, by id; re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None
        self.refresh()

    def __len__(self) -> int:
        return len(self._keys)

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; True when it was re-read.

        A file that became unreadable keeps the keys read before (``KeyFileError`` says why);
        a file that is gone means no keys, so every request is refused.
        """
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, -1)
        if stamp == self._stamp:
            return False
        keys = read_keys(self.path)
        self._keys = {k.id: k for k in keys if k.active}
        self._stamp = stamp
        return True

    def verify(self, token: str) -> ApiKey | None:
        """The active key ``token`` is, or None; constant time in the secret."""
        parts = split(token)
        key_id, secret = parts if parts is not None else ("", token)
        key = self._keys.get(key_id)
        ok = hmac.compare_digest(digest(secret), key.digest if key is not None else _DUMMY)
        return key if ok and key is not None else None
