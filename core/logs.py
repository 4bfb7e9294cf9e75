"""Logging set-up for entry points (libraries only call ``logging.getLogger``).

aiokafka logs every failed retry: with its broker away, a worker wrote about 60 lines a second
(``Unable connect to node``, ``Failed fetch messages``, ``Group Coordinator Request failed``),
the same few over and over. ``configure`` lets each distinct aiokafka message through once per
``REPEAT_WINDOW_S`` and says, with the next one let through, how many were held back.
"""

from __future__ import annotations

import json
import logging
import sys

REPEAT_WINDOW_S = 10.0


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class RepeatFilter(logging.Filter):
    """Each distinct message of ``prefix``'s loggers once per ``window_s``; the next one let
    through says how many like it were held back."""

    def __init__(self, prefix: str = "aiokafka", window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.prefix = prefix
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        shown, held = self._seen.get(key, (float("-inf"), 0))
        if record.created - shown < self.window_s:
            self._seen[key] = (shown, held + 1)
            return False
        if held:
            record.msg, record.args = (f"{message} ({held} more like it held back in the last "
                                       f"{record.created - shown:.0f}s)"), ()
        if len(self._seen) > 1000:  # messages that vary (offsets, ids): forget the quiet ones
            self._seen = {k: v for k, v in self._seen.items()
                          if record.created - v[0] < self.window_s}
        self._seen[key] = (record.created, 0)
        return True


def configure(level: str = "INFO", json_format: bool = False) -> None:
    """Send logs to stderr, as text or one JSON object per line, aiokafka's repeats held back
    (``RepeatFilter``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    handler.setFormatter(
        _JsonFormatter() if json_format
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
