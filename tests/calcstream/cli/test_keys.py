"""``calcstream keys``: a key is printed once, listed without its secret, and revoked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.keys import KeyRing, split

CALCSTREAM = [sys.executable, "-m", "calcstream.cli"]


def keys(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CALCSTREAM, "keys", *argv], capture_output=True, text=True,
                          check=False, env=env, timeout=60)


def test_create_list_revoke(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made = keys("create", "--tenant", "acme", "--scopes", "submit,read", "--name", "ci",
                "--file", str(path))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    ring = KeyRing(path)
    key = ring.verify(token)
    assert key is not None and key.tenant == "acme"
    assert "shown only now" in made.stderr

    listed = keys("list", "--file", str(path))
    assert listed.returncode == 0
    assert key.id in listed.stdout and "active" in listed.stdout
    parts = split(token)
    assert parts is not None
    assert parts[1] not in listed.stdout + path.read_text()

    gone = keys("revoke", key.id, "--file", str(path))
    assert gone.returncode == 0, gone.stderr
    ring.refresh()
    assert ring.verify(token) is None
    assert "revoked" in keys("list", "--file", str(path)).stdout


def test_mistakes_say_what_was_wrong(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.json")
    cases = {
        ("create", "--tenant", "a b", "--file", path): "not a tenant name",
        ("create", "--tenant", "acme", "--scopes", "write", "--file", path): "one of submit",
        ("revoke", "0123456789ab", "--file", path): "no key '0123456789ab'",
    }
    for argv, message in cases.items():
        done = keys(*argv)
        assert done.returncode == 2 and message in done.stderr, (argv, done.stderr)
    env = {k: v for k, v in os.environ.items() if k != "CALCSTREAM_API_KEYS_FILE"}
    assert "say which keys file" in keys("list", env=env).stderr
