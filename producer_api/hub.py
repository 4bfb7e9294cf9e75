"""WebSocket fan-out: which socket watches which ids, and a bounded outbox per socket.

The result reader calls ``Hub.publish`` for every new result; the hub puts the message into
the outbox of each socket watching that id (or everything) and never waits. Each socket has
its own sender task draining its outbox, so a slow reader only ever holds up itself.

**Watched ids are never dropped.** A socket watches at most ``ws_max_subscriptions`` ids and
each watch ends when its result is delivered, so their results are bounded by the watch limit
and all of them are kept until sent (the outbox holds references to the stored documents, not
copies). A result already retained when its id is subscribed is delivered at once.

**Tenants.** Watches are by store key (``store.scoped``), so a socket only ever watches ids of
its own tenant; its ``all`` stream carries its tenant's results, or every tenant's for an
admin key (and on an API without keys).

**Slow readers of ``all``.** The ``all`` stream is unbounded, so it gets ``ws_queue_size``
slots per socket; past that the oldest queued result is dropped and counted, and the socket's
next message is ``{"type": "dropped", "count": n}`` before the results that follow. ``all``
watches only new results, it does not replay the store. Replies to the client's own messages
(accepted, subscribed, error) are never dropped; a client that lets even those pile up past
``ws_queue_size`` is not reading at all, and its socket is closed with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Iterable

import orjson

from producer_api.stats import ApiStats
from producer_api.store import ResultStore, key_tenant
from producer_api.turns import Turns
from schemas.encoding import is_result_frame, result_to_json

_RESULT_PREFIX = b'{"type":"result",'
_TAKE_MAX = 256
_WRITTEN_KEPT = 8
"""Binary results whose JSON is kept for the next sockets that take them."""


def result_message(value: bytes) -> bytes:
    """A result as a WebSocket message: its JSON document (a binary result's, written out
    here) plus ``"type": "result"``."""
    if is_result_frame(value):
        value = _written_out(value)
    return _RESULT_PREFIX + value[1:]


_WRITTEN: deque[tuple[bytes, bytes]] = deque(maxlen=_WRITTEN_KEPT)


def writing_cost(value: bytes) -> int:
    """Bytes ``result_message`` has to write a result's JSON from: a binary result's size, 0
    for a JSON document (only prefixed) or a binary result written out lately."""
    if not is_result_frame(value) or any(seen is value for seen, _ in _WRITTEN):
        return 0
    return len(value)


def _written_out(frame: bytes) -> bytes:
    """A binary result's JSON document, written once for every socket that takes the same
    result soon after (the hub hands each of them the same bytes object)."""
    for seen, document in _WRITTEN:
        if seen is frame:
            return document
    document = result_to_json(frame)
    _WRITTEN.append((frame, document))
    return document


class Subscriber:
    """One socket: what it watches and its outbox."""

    __slots__ = ("ids", "all", "tenant", "capacity", "dropped", "turns", "_control",
                 "_watched", "_stream", "_wake")

    def __init__(self, capacity: int, tenant: str | None = None,
                 turns: Turns | None = None) -> None:
        self.ids: set[str] = set()
        self.all = False
        self.tenant = tenant  # whose results its ``all`` stream carries; None: everyone's
        self.capacity = capacity
        self.dropped = 0
        self.turns = turns  # a large result's JSON is written in its turn (turns.py)
        self._control: deque[bytes] = deque()
        self._watched: deque[bytes] = deque()
        self._stream: deque[bytes] = deque()
        self._wake = asyncio.Event()

    @property
    def watching(self) -> int:
        """Ids watched, or delivered but not yet sent."""
        return len(self.ids) + len(self._watched)

    def offer_watched(self, value: bytes) -> None:
        """Queue the result of a watched id (never dropped)."""
        self._watched.append(value)
        self._wake.set()

    def offer_stream(self, value: bytes) -> bool:
        """Queue a result of the ``all`` stream; drop (and count) the oldest when full.

        True when a result was dropped to make room.
        """
        dropped = len(self._stream) >= self.capacity
        if dropped:
            self._stream.popleft()
            self.dropped += 1
        self._stream.append(value)
        self._wake.set()
        return dropped

    def offer_control(self, message: bytes) -> bool:
        """Queue a reply to the client; False when the client stopped reading them."""
        if len(self._control) >= self.capacity:
            return False
        self._control.append(message)
        self._wake.set()
        return True

    def take_control(self) -> list[bytes]:
        """The replies queued now (results stay), without waiting."""
        out = list(self._control)
        self._control.clear()
        return out

    async def take(self) -> list[bytes]:
        """The next messages to send, in order; waits while there are none."""
        while not (self._control or self._watched or self._stream):
            self._wake.clear()
            await self._wake.wait()
        out = list(self._control)
        self._control.clear()
        watched = [self._watched.popleft() for _ in range(min(_TAKE_MAX, len(self._watched)))]
        dropped, self.dropped = self.dropped, 0
        stream = [self._stream.popleft() for _ in range(min(_TAKE_MAX, len(self._stream)))]
        await self._write_out(watched, out)
        if dropped:
            out.append(orjson.dumps({"type": "dropped", "count": dropped}))
        await self._write_out(stream, out)
        return out

    async def _write_out(self, results: list[bytes], out: list[bytes]) -> None:
        """Append each result's message to ``out``; large ones written in their turn."""
        turns = self.turns
        for value in results:
            cost = writing_cost(value)
            if turns is None or not cost:
                out.append(result_message(value))
            else:
                out.append(await turns.run(cost, functools.partial(result_message, value)))


class Hub:
    """Routes each new result to the sockets that watch it."""

    def __init__(self, store: ResultStore, stats: ApiStats | None = None) -> None:
        self.store = store
        self.stats = stats or ApiStats()
        self._by_id: dict[str, set[Subscriber]] = {}
        self._everyone: set[Subscriber] = set()

    def watch(self, sub: Subscriber, keys: Iterable[str]) -> None:
        """Watch store keys (``store.scoped``); results already retained are queued at once."""
        for key in keys:
            entry = self.store.get(key)
            if entry is not None and entry.result is not None:
                sub.offer_watched(entry.result)
            elif key not in sub.ids:
                sub.ids.add(key)
                self._by_id.setdefault(key, set()).add(sub)

    def watched_keys(self) -> Iterable[str]:
        """Store keys some socket watches."""
        return self._by_id.keys()

    def watchers(self, key: str) -> int:
        """Sockets watching this store key."""
        return len(self._by_id.get(key, ()))

    @property
    def streaming(self) -> int:
        """Sockets watching every result."""
        return len(self._everyone)

    def watch_all(self, sub: Subscriber) -> None:
        """Watch every new result."""
        sub.all = True
        self._everyone.add(sub)

    def unwatch(self, sub: Subscriber, keys: Iterable[str]) -> None:
        """Stop watching store keys."""
        for key in keys:
            sub.ids.discard(key)
            subs = self._by_id.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_id[key]

    def unwatch_all(self, sub: Subscriber) -> None:
        """Stop watching everything (ids watched one by one stay)."""
        sub.all = False
        self._everyone.discard(sub)

    def remove(self, sub: Subscriber) -> None:
        """The socket is gone."""
        self.unwatch_all(sub)
        self.unwatch(sub, list(sub.ids))

    def publish(self, key: str, value: bytes) -> None:
        """A new result arrived (``ResultReader`` listener, with its store key); never
        blocks."""
        subs = self._by_id.pop(key, None)
        if subs:
            for sub in subs:
                sub.ids.discard(key)
                sub.offer_watched(value)
        if not self._everyone:
            return
        tenant = key_tenant(key)
        for sub in self._everyone:
            if ((sub.tenant is None or sub.tenant == tenant) and (not subs or sub not in subs)
                    and sub.offer_stream(value)):
                self.stats.ws_dropped += 1
