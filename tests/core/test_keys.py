"""API keys: their form, the keys file, verification and revocation (pure; no server)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from core.keys import (
    KeyFileError,
    KeyRing,
    Scope,
    digest,
    new_key,
    read_keys,
    revoke,
    split,
    write_keys,
)

BOTH = frozenset({Scope.SUBMIT, Scope.READ})


def test_a_key_names_its_id_and_the_file_keeps_only_a_digest(tmp_path: Path) -> None:
    token, stored = new_key("acme", BOTH, "ci")
    key_id, secret = split(token) or ("", "")
    assert key_id == stored.id and len(key_id) == 12 and len(secret) >= 43
    path = tmp_path / "keys.json"
    write_keys(path, [stored])
    text = path.read_text()
    assert secret not in text and digest(secret) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_keys(path) == [stored]


def test_the_ring_accepts_only_active_keys_whole(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    token, stored = new_key("acme", BOTH)
    other, _ = new_key("acme", BOTH)
    write_keys(path, [stored])
    ring = KeyRing(path)
    assert ring.verify(token) == stored
    for wrong in (other, token[:-1], token + "x", "csk_" + stored.id + "_", stored.id, "",
                  token.replace("csk_", "csx_")):
        assert ring.verify(wrong) is None, wrong
    write_keys(path, revoke(read_keys(path), stored.id))
    assert ring.refresh() is True
    assert ring.verify(token) is None
    assert ring.refresh() is False  # unchanged: not read again


def test_a_file_gone_means_no_keys_and_a_broken_one_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    token, stored = new_key("acme", BOTH)
    write_keys(path, [stored])
    ring = KeyRing(path)
    path.unlink()
    ring.refresh()
    assert ring.verify(token) is None and len(ring) == 0
    path.write_text('{"keys": [{"id": "x"}]}')
    with pytest.raises(KeyFileError, match="malformed"):
        ring.refresh()
    path.write_text(orjson.dumps({"keys": [{**stored.document(), "tenant": "a b"}]}).decode())
    with pytest.raises(KeyFileError, match="not a tenant name"):
        read_keys(path)


def test_keys_need_a_tenant_name_and_a_scope() -> None:
    with pytest.raises(ValueError, match="tenant"):
        new_key("a/b", BOTH)
    with pytest.raises(ValueError, match="scope"):
        new_key("acme", frozenset())
    with pytest.raises(KeyError):
        revoke([], "nope")
