"""``calcstream keys``: create, list and revoke the API's keys (``core.keys`` says how they
are stored). A new key is printed once, on stdout, and kept nowhere but in what the caller does
with it; the file holds only its digest."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calcstream.cli.errors import CommandError, InputError
from core.keys import KeyFileError, Scope, new_key, read_keys, revoke, write_keys

ENV = "CALCSTREAM_API_KEYS_FILE"


def add_commands(sub: Any) -> None:
    """``keys create | list | revoke``."""
    keys = sub.add_parser(
        "keys", help="create, list and revoke API keys",
        description="The API reads its keys from CALCSTREAM_API_KEYS_FILE and picks up "
        "changes within keys_refresh_s (2 s). Each key belongs to a tenant and sees only that "
        "tenant's calculations.")
    actions = keys.add_subparsers(title="actions", metavar="ACTION", dest="action",
                                  required=True)
    file_help = f"the keys file (default: ${ENV})"

    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True, help="whose calculations the key sees")
    create.add_argument("--scopes", default="submit,read",
                        help="comma-separated, of submit, read, admin (submit,read)")
    create.add_argument("--name", default="", help="a note to tell keys apart")
    create.add_argument("--file", type=Path, help=file_help)
    create.set_defaults(func=_command(_create))

    listing = actions.add_parser("list", help="list the keys (never their secrets)")
    listing.add_argument("--file", type=Path, help=file_help)
    listing.set_defaults(func=_command(_list))

    gone = actions.add_parser("revoke", help="revoke a key by its id")
    gone.add_argument("key_id", help="the 12-character id (`calcstream keys list`)")
    gone.add_argument("--file", type=Path, help=file_help)
    gone.set_defaults(func=_command(_revoke))


def _path(args: argparse.Namespace) -> Path:
    path: Path | None = args.file or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if path is None:
        raise InputError(f"say which keys file: --file PATH or {ENV}")
    return path


def _scopes(text: str) -> frozenset[Scope]:
    try:
        return frozenset(Scope(s.strip()) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--scopes {text!r}: each must be one of "
                         f"{', '.join(s.value for s in Scope)}") from None


def _command(action: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    """``action`` as a subcommand: its errors in one line, with their exit code."""
    def run(args: argparse.Namespace) -> int:
        try:
            action(args)
        except CommandError as exc:
            print(f"calcstream keys: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyFileError as exc:
            print(f"calcstream keys: {exc}", file=sys.stderr)
            return 1
        return 0
    return run


def _create(args: argparse.Namespace) -> None:
    path = _path(args)
    try:
        token, stored = new_key(args.tenant, _scopes(args.scopes), args.name)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    write_keys(path, [*read_keys(path), stored])
    print(token)
    print(f"key {stored.id} for tenant {stored.tenant!r} ({', '.join(sorted(stored.scopes))}) "
          f"added to {path}; the key above is shown only now", file=sys.stderr)


def _list(args: argparse.Namespace) -> None:
    for key in read_keys(_path(args)):
        state = "active" if key.active else f"revoked {_when(key.revoked_at)}"
        print(f"{key.id}  {key.tenant:<20} {','.join(sorted(key.scopes)):<18} "
              f"created {_when(key.created_at)}  {state}  {key.name}".rstrip())


def _revoke(args: argparse.Namespace) -> None:
    path = _path(args)
    try:
        write_keys(path, revoke(read_keys(path), args.key_id))
    except KeyError:
        raise InputError(f"no key {args.key_id!r} in {path}") from None
    print(f"key {args.key_id} revoked; the API refuses it within its keys_refresh_s",
          file=sys.stderr)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
