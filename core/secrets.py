"""What a start-up line may show of a process's settings: never a secret."""

from __future__ import annotations

import logging
import re

from pydantic import BaseModel

_SECRET_WORDS = frozenset({"password", "secret", "token", "credential", "key"})
"""Words of a field name (split at ``_``) that make its value secret: ``api_key`` and
``sasl_password`` are, ``keys_refresh_s`` and ``ssl_keyfile`` (a path) are not."""
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s,]*):[^@\s,]*@")


def masked(settings: BaseModel) -> dict[str, object]:
    """The settings as logged: values of secret-named fields hidden, and passwords inside URLs
    (``redis://:pw@host``, ``user:pw@host``) replaced by ``***``."""
    out: dict[str, object] = {}
    for name, value in settings.model_dump().items():
        if value and not _SECRET_WORDS.isdisjoint(name.split("_")):
            out[name] = "***"
        elif isinstance(value, str):
            out[name] = _URL_PASSWORD.sub(r"\1:***@", value)
        else:
            out[name] = value
    return out


API_KEY = re.compile(r"(csk_[0-9a-f]{12}_)[A-Za-z0-9_.-]+")  # dots: a frame cut "…"
"""An API key (``core.keys``): its public id, then the secret."""


def redact(text: str) -> str:
    """``text`` with the secret of every API key in it replaced by ``***``."""
    return API_KEY.sub(r"\1***", text)


class RedactKeys(logging.Filter):
    """A logging filter that keeps API key secrets out of a logger's lines (uvicorn's access
    log prints URLs, its WebSocket debug lines print frames)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "csk_" in message:
            record.msg, record.args = redact(message), None
        return True


def redact_keys_in(*names: str) -> None:
    """Install ``RedactKeys`` on the named loggers (once each)."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in target.filters):
            target.addFilter(RedactKeys())
