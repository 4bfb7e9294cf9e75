"""Collecting the results of an ingest: matched to the ids sent, each written once as NDJSON.

``ResultCollector`` does the matching and the writing; where the results come from is its
subclass's business: ``TopicCollector`` reads the reply topic, ``WatchCollector`` the API's
websocket (``calcstream ingest --via-api``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import IO

import orjson

from calcstream.cli import kafka_io
from calcstream.client.subscriptions import Watch


class ResultCollector:
    """Matches results to the ids expected and writes the first one of each id."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.received = 0
        self.statuses: Counter[str] = Counter()
        self._pending: set[str] = set()
        self._all_sent = False
        self._complete = asyncio.Event()

    async def expect(self, request_id: str) -> None:
        """Watch for the result of ``request_id`` (before sending it)."""
        self._pending.add(request_id)

    def forget(self, request_id: str) -> None:
        """No result will come for ``request_id`` (it was refused)."""
        self._pending.discard(request_id)
        self._check_complete()

    def all_sent(self) -> None:
        """No more ids will be expected."""
        self._all_sent = True
        self._check_complete()

    async def run(self) -> None:
        """Read results until cancelled."""
        raise NotImplementedError

    def take(self, request_id: str | None, value: bytes, status: str | None = None) -> None:
        """One result from wherever: written if its id is expected and not answered yet."""
        if request_id not in self._pending:
            return
        self._pending.discard(request_id)
        self.received += 1
        self.out.write(value + b"\n")
        if status is None:
            try:
                status = str(orjson.loads(value).get("status"))
            except (orjson.JSONDecodeError, AttributeError):
                status = "unreadable"
        self.statuses[status] += 1

    def _check_complete(self) -> None:
        if self._all_sent and not self._pending:
            self._complete.set()

    async def wait(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` s for the outstanding results; return the ids still missing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._complete.wait(), timeout)
        return sorted(self._pending)


class TopicCollector(ResultCollector):
    """Results read from the reply topic."""

    def __init__(self, follower: kafka_io.TopicFollower, out: IO[bytes]) -> None:
        super().__init__(out)
        self.follower = follower

    async def run(self) -> None:
        """Read the reply topic until cancelled."""
        async for batch in self.follower.batches():
            for record in batch:
                self.take(record.key.decode(errors="replace") if record.key else None,
                          record.value)
            self._check_complete()


class WatchCollector(ResultCollector):
    """Results pushed by the API over its websocket, for the ids subscribed.

    ``expect`` subscribes and waits while the watch's window is full, which holds the sender
    back until results catch up: the API keeps watched results until they are delivered, so
    none is lost however far the workers fall behind.
    """

    def __init__(self, watch: Watch, out: IO[bytes]) -> None:
        super().__init__(out)
        self.watch = watch

    async def expect(self, request_id: str) -> None:
        """Subscribe to ``request_id`` (waits while the window is full)."""
        await super().expect(request_id)
        await self.watch.add(request_id)

    def forget(self, request_id: str) -> None:
        """Unsubscribe from a refused request."""
        self.watch.discard(request_id)
        super().forget(request_id)

    async def run(self) -> None:
        """Take results from the websocket until cancelled (raises if it is lost)."""
        while True:
            delivery = await self.watch.get()
            if delivery is not None:
                self.take(delivery.id, delivery.raw, str(delivery.document.get("status")))
                self._check_complete()
