"""A clock for pure-logic tests: it moves only when a test sets ``now``."""

from __future__ import annotations


class Clock:
    """Callable like ``time.monotonic``; returns ``now``, which the test advances."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
