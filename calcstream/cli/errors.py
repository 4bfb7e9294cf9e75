"""What the ``calcstream`` commands report: a ``CommandError`` in one line, with an exit code.

    CommandError        exit 1  something went wrong; the message says what
    ├── BrokerDown      exit 2  no broker answers at the bootstrap address, or a topic is missing
    ├── ApiDown         exit 2  no calcstream API answers at the URL, or it is not ready
    ├── InputError      exit 2  the input file or the arguments do not make valid requests
    └── ResultTimeout   exit 3  a result did not arrive in time
"""

from __future__ import annotations


class CommandError(Exception):
    """A failure the command reports as one line on stderr, without a traceback."""

    exit_code = 1


class BrokerDown(CommandError):
    """The broker does not answer, went away, or lacks a topic the command needs."""

    exit_code = 2


class ApiDown(CommandError):
    """The calcstream API does not answer, went away, or is not ready."""

    exit_code = 2


class InputError(CommandError):
    """The input cannot be turned into requests (unreadable file, bad op or args)."""

    exit_code = 2


class ResultTimeout(CommandError):
    """No result arrived within the timeout."""

    exit_code = 3
