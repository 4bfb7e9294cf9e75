"""``WS /v1/ws``: watch results as they are computed, and submit over the same socket.

Client → server (JSON text messages; an optional ``ref`` is echoed in the reply):

    {"type": "subscribe", "ids": ["a", "b"]}      watch ids (retained results come at once)
    {"type": "subscribe", "all": true}            watch every new result
    {"type": "unsubscribe", "ids": [...]}  /  {"type": "unsubscribe", "all": true}
    {"type": "submit", "request": {...}}          as POST /v1/calculations; the id is watched

Server → client:

    {"type": "result", ...CalcResult fields}      one per result
    {"type": "subscribed" | "unsubscribed", "ids": [...] | "all": true}
    {"type": "accepted", "id": "..."}             the broker acknowledged a submit
    {"type": "dropped", "count": n}               n older results were dropped (slow reader)
    {"type": "error", "error": {"code", "message", "fields"?}}   the socket stays open

Results of watched ids are never dropped; the ``all`` stream drops its oldest results for a
slow reader and says how many. A message over ``ws_max_message_bytes`` closes the socket with
1009; a client that does not read even the replies to its own messages is closed with 1008
(see ``producer_api.hub``). Handshakes from a foreign Origin or beyond ``ws_max_connections``
are refused before they get here (``producer_api.admission``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from core.tasks import cancel_and_wait
from producer_api import intake
from producer_api.deps import Services, ServicesDep
from producer_api.errors import ApiError, InvalidRequest
from producer_api.hub import Subscriber
from schemas.messages import is_request_id

logger = logging.getLogger(__name__)

router = APIRouter()

CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008


class _Session:
    """One socket's state: its outbox, its watches, its submits in flight."""

    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.sub = Subscriber(self.settings.ws_queue_size)
        self.submits = asyncio.Semaphore(self.settings.ws_submits_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()
        self.close_code: int | None = None

    def reply(self, doc: dict[str, Any], ref: Any) -> None:
        if ref is not None:
            doc["ref"] = ref
        if not self.sub.offer_control(orjson.dumps(doc)):
            self.close_code = CLOSE_POLICY

    def error(self, exc: ApiError, ref: Any) -> None:
        self.reply({"type": "error", **exc.body()}, ref)

    async def handle(self, text: str | bytes) -> None:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.error(InvalidRequest.of("message", f"not valid JSON: {exc}"), None)
            return
        if not isinstance(doc, dict):
            self.error(InvalidRequest.of("message", "expected a JSON object"), None)
            return
        ref = doc.get("ref")
        kind = doc.get("type")
        try:
            if kind == "subscribe":
                self._subscribe(doc, ref)
            elif kind == "unsubscribe":
                self._unsubscribe(doc, ref)
            elif kind == "submit":
                item = intake.from_object(doc.get("request"), self.settings.max_array_length,
                                          time.time(), where="request",
                                          binary=self.settings.publish_binary)
                await self.submits.acquire()
                task = asyncio.get_running_loop().create_task(self._submit(item, ref))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                raise InvalidRequest.of(
                    "type", "expected 'subscribe', 'unsubscribe' or 'submit'")
        except ApiError as exc:
            if kind == "submit":
                self.services.stats.ws.reject(exc)
            self.error(exc, ref)

    def _ids(self, doc: dict[str, Any]) -> list[str]:
        ids = doc.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) and is_request_id(i)
                                                for i in ids):
            raise InvalidRequest.of("ids", "expected a list of request ids (or \"all\": true)")
        return ids

    def _subscribe(self, doc: dict[str, Any], ref: Any) -> None:
        hub = self.services.hub
        if doc.get("all") is True:
            hub.watch_all(self.sub)
            self.reply({"type": "subscribed", "all": True}, ref)
            return
        ids = self._ids(doc)
        if self.sub.watching + len(ids) > self.settings.ws_max_subscriptions:
            raise InvalidRequest.of("ids", f"at most {self.settings.ws_max_subscriptions} ids "
                                    "may be watched at once")
        self.reply({"type": "subscribed", "ids": ids}, ref)
        hub.watch(self.sub, ids)

    def _unsubscribe(self, doc: dict[str, Any], ref: Any) -> None:
        if doc.get("all") is True:
            self.services.hub.unwatch_all(self.sub)
            self.reply({"type": "unsubscribed", "all": True}, ref)
            return
        ids = self._ids(doc)
        self.services.hub.unwatch(self.sub, ids)
        self.reply({"type": "unsubscribed", "ids": ids}, ref)

    async def _submit(self, item: intake.Prepared, ref: Any) -> None:
        counts = self.services.stats.ws
        try:
            outcome = await self.services.acceptor.accept(item)
        except ApiError as exc:
            counts.reject(exc)
            self.error(exc, ref)
            return
        finally:
            self.submits.release()
        if outcome.existing:
            counts.deduplicated += 1
        else:
            counts.accepted += 1
        self.reply({"type": "accepted", "id": outcome.id}, ref)
        self.services.hub.watch(self.sub, [outcome.id])

    async def pump(self) -> None:
        """Send the outbox until the socket goes away."""
        while True:
            for message in await self.sub.take():
                await self.ws.send_text(message.decode())

    async def close(self) -> None:
        self.services.hub.remove(self.sub)
        await cancel_and_wait(*self.tasks)


@router.websocket("/v1/ws")
async def results_socket(ws: WebSocket, services: ServicesDep) -> None:
    """Subscribe to results and submit requests over one socket."""
    await ws.accept()
    session = _Session(ws, services)
    sender = asyncio.get_running_loop().create_task(session.pump(), name="ws-pump")
    limit = services.settings.ws_max_message_bytes
    services.stats.ws_opened += 1  # open ones are counted at the door (producer_api.admission)
    try:
        while session.close_code is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > limit:
                session.close_code = CLOSE_TOO_BIG
                break
            await session.handle(data)
            if sender.done():
                return
        await ws.close(session.close_code)
    except WebSocketDisconnect:
        pass
    finally:
        await cancel_and_wait(sender)
        await session.close()
