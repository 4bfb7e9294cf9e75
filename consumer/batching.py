"""Micro-batching and commit ordering: pure bookkeeping, no I/O."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Positioned(Protocol):
    """A consumed record as far as batching cares: where it came from."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Positioned)
TP = tuple[str, int]


class Batcher(Generic[R]):
    """Collects records; a batch is due at ``max_size`` records or ``max_delay`` after the first."""

    def __init__(
        self, max_size: int, max_delay: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_size = max_size
        self.max_delay = max_delay
        self._clock = clock
        self._records: list[R] = []
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._records)

    def add(self, records: Iterable[R]) -> None:
        """Queue records in arrival order."""
        before = len(self._records)
        self._records.extend(records)
        if before == 0 and self._records:
            self._first_at = self._clock()

    def time_left(self) -> float | None:
        """Seconds until the delay makes a batch due; None when empty, 0 when due."""
        if not self._records:
            return None
        if len(self._records) >= self.max_size:
            return 0.0
        assert self._first_at is not None
        return max(0.0, self._first_at + self.max_delay - self._clock())

    def due(self) -> bool:
        """A batch should be taken now."""
        return self.time_left() == 0.0

    def take(self) -> list[R]:
        """Up to ``max_size`` of the oldest records; the rest start a new batch now."""
        batch, self._records = self._records[: self.max_size], self._records[self.max_size :]
        self._first_at = self._clock() if self._records else None
        return batch

    def drop(self, partitions: Iterable[TP]) -> int:
        """Forget queued records of these partitions (revoked); return how many."""
        gone = set(partitions)
        kept = [r for r in self._records if (r.topic, r.partition) not in gone]
        dropped = len(self._records) - len(kept)
        self._records = kept
        if not kept:
            self._first_at = None
        return dropped


def next_offsets(records: Iterable[Positioned]) -> dict[TP, int]:
    """Per partition, the offset after the last record: what to commit once they are handled."""
    out: dict[TP, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset + 1 > out.get(key, -1):
            out[key] = r.offset + 1
    return out


@dataclass
class _Pending:
    offsets: dict[TP, int]
    done: bool = False


@dataclass
class CommitLog:
    """Orders commits: a batch's offsets are committable once it and every earlier batch is done.

    Batches finish out of order when several are in flight; committing a later batch's offsets
    first would skip records of an earlier one that is still publishing.
    """

    _queue: deque[_Pending] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self._queue)

    def open(self, records: Iterable[Positioned]) -> object:
        """Register a batch in fetch order; returns a token for ``finish``."""
        entry = _Pending(next_offsets(records))
        self._queue.append(entry)
        return entry

    def finish(self, token: object) -> None:
        """Mark a batch handled (its results and dead letters are acked)."""
        assert isinstance(token, _Pending)
        token.done = True

    def committable(self) -> dict[TP, int]:
        """Pop the finished prefix and return the merged offsets to commit."""
        merged: dict[TP, int] = {}
        while self._queue and self._queue[0].done:
            for tp, offset in self._queue.popleft().offsets.items():
                merged[tp] = max(offset, merged.get(tp, -1))
        return merged
