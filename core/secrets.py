"""What a start-up line may show of a process's settings: never a secret."""

from __future__ import annotations

import re

from pydantic import BaseModel

_SECRET_WORDS = ("password", "secret", "token", "credential", "key")
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s,]*):[^@\s,]*@")


def masked(settings: BaseModel) -> dict[str, object]:
    """The settings as logged: values of secret-named fields hidden, and passwords inside URLs
    (``redis://:pw@host``, ``user:pw@host``) replaced by ``***``."""
    out: dict[str, object] = {}
    for name, value in settings.model_dump().items():
        if value and any(word in name for word in _SECRET_WORDS):
            out[name] = "***"
        elif isinstance(value, str):
            out[name] = _URL_PASSWORD.sub(r"\1:***@", value)
        else:
            out[name] = value
    return out
