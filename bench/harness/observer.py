"""A WebSocket client of the API that watches every new result (``subscribe all``).

It is how a client observes results it did not wait for: bulk ingestion and the streaming W1
variant. Each result is checked as it arrives; the observer keeps only counts and timestamps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

Checker = Callable[[dict[str, object]], bool]


@dataclass
class Observer:
    """``async with Observer(url, check):`` collects results until closed."""

    ws_url: str
    check: Checker
    ok: int = 0
    wrong: int = 0
    dropped: int = 0
    first: float | None = None
    last: float | None = None
    seen: set[str] = field(default_factory=set)
    keep_ids: bool = False
    _session: aiohttp.ClientSession | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Observer:
        self._session = aiohttp.ClientSession()
        ws = self._ws = await self._session.ws_connect(self.ws_url,
                                                       max_msg_size=64 * 1024 * 1024)
        await ws.send_str('{"type":"subscribe","all":true}')
        reply = orjson.loads((await ws.receive(timeout=10)).data)
        if reply.get("type") != "subscribed":
            raise RuntimeError(f"subscribe failed: {reply}")
        self._task = asyncio.create_task(self._read(ws))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            doc = orjson.loads(msg.data)
            kind = doc.get("type")
            if kind == "dropped":
                self.dropped += int(doc["count"])
            elif kind == "result":
                now = time.perf_counter()
                if self.first is None:
                    self.first = now
                self.last = now
                if self.check(doc):
                    self.ok += 1
                    if self.keep_ids:
                        self.seen.add(str(doc["id"]))
                else:
                    self.wrong += 1
            self._changed.set()

    @property
    def observed(self) -> int:
        """Results received (right or wrong) plus those the server dropped."""
        return self.ok + self.wrong + self.dropped

    async def wait_for(self, count: int, quiet_s: float, limit_s: float) -> bool:
        """Until ``count`` results arrived; give up after ``quiet_s`` without one or at
        ``limit_s``. True when the count was reached."""
        deadline = time.monotonic() + limit_s
        while self.observed < count and time.monotonic() < deadline:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), quiet_s)
            except TimeoutError:
                return self.observed >= count
        return self.observed >= count
