"""Results over the API's websocket: one connection per client, shared by everything that waits.

``ResultSocket`` owns the connection. It subscribes ids, routes each result to the ``Watch``es
waiting for it, and when the connection drops it reconnects and subscribes again to every id
still awaited: the API delivers a result it already holds at once on subscription, so nothing
is lost in between. If it cannot reconnect, every waiting ``Watch`` fails with ``Unavailable``
instead of hanging.

A ``Watch`` is one consumer's view: ids go in (at most ``window`` unanswered at once, which keeps
the socket under the API's subscription limit and gives the producer of ids backpressure),
results come out in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from types import TracebackType
from typing import Any, NamedTuple

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from calcstream.client.errors import ClientError, InvalidRequest, Unavailable
from core.tasks import cancel_and_wait
from schemas.messages import CalcResult, is_request_id

logger = logging.getLogger(__name__)

_RESULT_PREFIX = b'{"type":"result",'
_IDS_PER_MESSAGE = 5_000
_MAX_FRAME = 256 * 1024 * 1024  # results are trusted and can be large matrices


class Delivery(NamedTuple):
    """One result as it arrived: its id, the parsed document and its JSON bytes."""

    id: str
    document: dict[str, Any]
    raw: bytes

    def result(self) -> CalcResult:
        """The document as a validated ``CalcResult``."""
        return CalcResult.model_validate(self.document)


class Watch:
    """Results of the ids added to it, as they arrive; ``close()`` stops watching the rest."""

    def __init__(self, socket: ResultSocket, window: int) -> None:
        self.window = window
        self.pending: set[str] = set()
        """Ids added and not answered yet."""
        self._socket = socket
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self._failure: ClientError | None = None

    async def add(self, request_id: str) -> None:
        """Watch one more id; waits while ``window`` ids are unanswered."""
        if not is_request_id(request_id):
            raise InvalidRequest(f"not a request id: {request_id!r}",
                                 fields=[{"field": "id", "message": "1-128 of A-Z a-z 0-9 . _ "
                                          ": @ -"}])
        while len(self.pending) >= self.window and self._failure is None:
            self._room.clear()
            await self._room.wait()
        if self._failure is not None:
            raise self._failure
        if request_id not in self.pending:
            self.pending.add(request_id)
            self._socket.watch(self, request_id)

    def discard(self, request_id: str) -> None:
        """Stop waiting for one id."""
        if request_id in self.pending:
            self.pending.discard(request_id)
            self._socket.unwatch(self, request_id)
            self._room.set()

    def end(self) -> None:
        """Mark the end of the ids: ``get()`` returns None once, after the deliveries so far."""
        self._inbox.put_nowait(None)

    async def get(self) -> Delivery | None:
        """The next result (None where ``end()`` was called); raises if the socket failed."""
        if self._failure is not None and self._inbox.empty():
            raise self._failure
        delivery = await self._inbox.get()
        if delivery is None and self._failure is not None:
            raise self._failure
        return delivery

    @property
    def queued(self) -> int:
        """Results received and not taken by ``get()`` yet."""
        return self._inbox.qsize()

    def close(self) -> None:
        """Stop watching every pending id; safe to call twice."""
        for request_id in self.pending:
            self._socket.unwatch(self, request_id)
        self.pending.clear()
        self._room.set()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # Called by the socket.
    def deliver(self, delivery: Delivery) -> None:
        if delivery.id in self.pending:
            self.pending.discard(delivery.id)
            self._inbox.put_nowait(delivery)
            self._room.set()

    def fail(self, exc: ClientError) -> None:
        if self._failure is None:
            self._failure = exc
            for request_id in self.pending:  # ``pending`` stays: what never got an answer
                self._socket.unwatch(self, request_id)
            self._inbox.put_nowait(None)
            self._room.set()


class ResultSocket:
    """The websocket to ``WS /v1/ws``: subscriptions in, results out to the watches."""

    def __init__(self, url: str, *, open_timeout: float, reconnects: int,
                 max_message_bytes: int, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.open_timeout = open_timeout
        self.reconnects = reconnects
        self.message_budget = max(1024, min(max_message_bytes // 2, 1024 * 1024))
        self.failure: ClientError | None = None
        """Set once the socket gave up; the client then opens a new one."""
        self._table: dict[str, list[Watch]] = {}
        self._outbox: deque[tuple[bool, str]] = deque()  # (subscribe?, id), in order
        self._wake = asyncio.Event()
        self._refs: dict[int, list[str]] = {}
        self._next_ref = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Open the connection (``Unavailable`` if the API does not answer)."""
        self._ws = await self._open()
        self._task = asyncio.create_task(self._run(), name="calcstream-results-socket")

    async def close(self) -> None:
        """Close the connection; waiting watches fail. Safe to call twice."""
        self._closing = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._give_up(ClientError("the client was closed"))

    def watch(self, watch: Watch, request_id: str) -> None:
        """Route ``request_id``'s result to ``watch``; subscribe unless already subscribed."""
        if self.failure is not None:
            watch.fail(self.failure)
            return
        watchers = self._table.get(request_id)
        if watchers is None:
            self._table[request_id] = [watch]
            self._outbox.append((True, request_id))
            self._wake.set()
        elif watch not in watchers:
            watchers.append(watch)

    def unwatch(self, watch: Watch, request_id: str) -> None:
        """Stop routing to ``watch``; unsubscribe when nobody waits for the id any more."""
        watchers = self._table.get(request_id)
        if watchers is None or watch not in watchers:
            return
        watchers.remove(watch)
        if not watchers:
            del self._table[request_id]
            self._outbox.append((False, request_id))
            self._wake.set()

    async def _open(self) -> ClientConnection:
        try:
            return await connect(self.url, open_timeout=self.open_timeout, max_size=_MAX_FRAME,
                                 compression=None, max_queue=64,
                                 additional_headers=self.headers)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise Unavailable(f"cannot open the results websocket {self.url}: "
                              f"{exc or type(exc).__name__}") from None

    async def _run(self) -> None:
        """Serve the connection; on a drop reconnect and resubscribe, or fail every watch."""
        while True:
            assert self._ws is not None
            reason = await self._serve(self._ws)
            if self._closing or reason is None:
                return
            logger.info("results websocket dropped (%s); reconnecting", reason)
            try:
                self._ws = await self._reconnect()
            except Unavailable as exc:
                self._give_up(exc)
                return
            self._refs.clear()
            self._outbox = deque((True, request_id) for request_id in self._table)
            self._wake.set()

    async def _serve(self, ws: ClientConnection) -> str | None:
        """Read and write until the connection ends: why it ended, or None if it gave up."""
        reader = asyncio.create_task(self._read(ws))
        writer = asyncio.create_task(self._write(ws))
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(reader, writer)
            with contextlib.suppress(WebSocketException, OSError):
                await ws.close()
        exc = next(iter(done)).exception()
        if exc is not None and not isinstance(exc, (WebSocketException, OSError)):
            logger.error("results websocket failed", exc_info=exc)
            self._give_up(ClientError(f"the results websocket failed: {exc!r}"))
            return None
        return str(exc) if exc is not None else f"closed: {ws.close_code} {ws.close_reason}"

    async def _reconnect(self) -> ClientConnection:
        for attempt in range(self.reconnects + 1):
            await asyncio.sleep(min(0.1 * 2.0 ** attempt, 2.0))
            try:
                return await self._open()
            except Unavailable as exc:
                last = exc
        raise Unavailable(f"lost the results websocket {self.url} and could not reconnect: "
                          f"{last.message}")

    def _give_up(self, exc: ClientError) -> None:
        if self.failure is None:
            self.failure = exc
        watches = {id(w): w for ws in self._table.values() for w in ws}
        self._table.clear()
        self._outbox.clear()
        for watch in watches.values():
            watch.fail(exc)

    async def _write(self, ws: ClientConnection) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            subscribe, ids = self._take_run()
            if not ids:
                continue
            doc: dict[str, Any] = {"type": "subscribe" if subscribe else "unsubscribe",
                                   "ids": ids}
            if subscribe:
                self._next_ref += 1
                doc["ref"] = self._next_ref
                self._refs[self._next_ref] = ids
            await ws.send(orjson.dumps(doc).decode())

    def _take_run(self) -> tuple[bool, list[str]]:
        """The next run of same-kind requests from the outbox, within one message's budget."""
        subscribe = self._outbox[0][0]
        ids: list[str] = []
        size = 64
        while self._outbox and self._outbox[0][0] == subscribe and len(ids) < _IDS_PER_MESSAGE:
            request_id = self._outbox[0][1]
            size += len(request_id) + 3
            if ids and size > self.message_budget:
                break
            self._outbox.popleft()
            # Only what is still true is sent: a watch undone before its subscribe went out
            # needs no subscribe, and an id watched again needs no unsubscribe.
            if (request_id in self._table) == subscribe:
                ids.append(request_id)
        return subscribe, ids

    async def _read(self, ws: ClientConnection) -> None:
        async for message in ws:
            self._handle(message.encode() if isinstance(message, str) else message)

    def _handle(self, raw: bytes) -> None:
        doc = orjson.loads(raw)
        kind = doc.pop("type", None)
        if kind == "result":
            watchers = self._table.pop(doc.get("id"), None)
            if watchers:
                body = (b"{" + raw[len(_RESULT_PREFIX):] if raw.startswith(_RESULT_PREFIX)
                        else orjson.dumps(doc))
                delivery = Delivery(doc["id"], doc, body)
                for watch in watchers:
                    watch.deliver(delivery)
        elif kind == "subscribed":
            self._refs.pop(doc.get("ref"), None)
        elif kind == "error":
            error = doc.get("error") or {}
            ids = self._refs.pop(doc.get("ref"), None)
            exc = InvalidRequest(f"the API refused a subscription: {error.get('message')}",
                                 code=error.get("code"), fields=error.get("fields"))
            if not ids:
                logger.warning("results websocket: %s", exc)
                return
            for request_id in ids:
                for watch in self._table.pop(request_id, []):
                    watch.fail(exc)
