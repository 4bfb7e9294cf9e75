"""``WS /v1/ws``: watch results as they are computed, and submit over the same socket.

Client → server (JSON text messages; an optional ``ref`` is echoed in the reply):

    {"type": "auth", "key": "csk_..."}            first, on an API with keys, unless the
                                                  handshake sent Authorization: Bearer
    {"type": "subscribe", "ids": ["a", "b"]}      watch ids (retained results come at once)
    {"type": "subscribe", "all": true}            watch every new result
    {"type": "unsubscribe", "ids": [...]}  /  {"type": "unsubscribe", "all": true}
    {"type": "submit", "request": {...}}          as POST /v1/calculations; the id is watched
                                                  (optional "traceparent" and "tracestate":
                                                  its W3C trace context, else the handshake's)

Server → client:

    {"type": "authenticated", "tenant": ..., "scopes": [...]}
    {"type": "result", ...CalcResult fields}      one per result
    {"type": "subscribed" | "unsubscribed", "ids": [...] | "all": true}
    {"type": "accepted", "id": "..."}             the broker acknowledged a submit
    {"type": "dropped", "count": n}               n older results were dropped (slow reader)
    {"type": "error", "error": {"code", "message", "fields"?}}   the socket stays open

On an API with keys, ids are the key's tenant's and ``all`` streams that tenant's results
(every tenant's for an admin key); subscribing needs the read scope, submitting the submit
scope. A socket that is not authenticated within ``ws_auth_timeout_s``, or that sends anything
else first, or a key that is not valid, is answered with an ``unauthorized`` error and closed
with 1008. A key is never accepted in the URL.

Results of watched ids are never dropped; the ``all`` stream drops its oldest results for a
slow reader and says how many. A message over ``ws_max_message_bytes`` closes the socket with
1009; a client that does not read even the replies to its own messages is closed with 1008
(see ``producer_api.hub``). Handshakes from a foreign Origin or beyond ``ws_max_connections``
are refused before they get here (``producer_api.admission``). Messages are not compressed:
permessage-deflate is declined unless ``ws_compression`` is on (it would run on the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from core.keys import Scope
from core.tasks import cancel_and_wait
from producer_api import intake
from producer_api.acceptance import Outcome
from producer_api.auth import OPEN, Principal, authenticate
from producer_api.deps import Services, ServicesDep
from producer_api.errors import ApiError, InvalidRequest, Unauthorized
from producer_api.hub import Subscriber
from producer_api.store import scoped
from producer_api.tracing import TraceHeaders, carried, from_message
from producer_api.usecase import owner_of, recall, recaller
from schemas import floatjson
from schemas.messages import is_request_id

logger = logging.getLogger(__name__)

router = APIRouter()

CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008


class _Session:
    """One socket's state: its outbox, its watches, its submits in flight."""

    def __init__(self, ws: WebSocket, services: Services, principal: Principal | None) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.principal = principal  # None until the socket's first message authenticates it
        self.sub = Subscriber(self.settings.ws_queue_size, _stream_tenant(principal),
                              services.turns)
        self.submits = asyncio.Semaphore(self.settings.ws_submits_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()
        self.asking: set[str] = set()  # store keys to watch once their owners answered
        self.close_code: int | None = None
        self.trace = carried(ws.scope["headers"])  # the handshake's, for submits without one
        self.credentials = ws.headers.get("authorization", "")  # or the auth message's key:
        # for asking the replica that reads an id's partition about it (usecase.recall)

    def reply(self, doc: dict[str, Any], ref: Any) -> None:
        if ref is not None:
            doc["ref"] = ref
        if not self.sub.offer_control(orjson.dumps(doc)):
            self.close_code = CLOSE_POLICY

    def error(self, exc: ApiError, ref: Any) -> None:
        self.reply({"type": "error", **exc.body()}, ref)

    async def handle(self, text: str | bytes) -> None:
        turns = self.services.turns
        plain = None  # a plain submit: its data read straight into float64 (floatjson.py)
        if self.settings.publish_binary and len(text) >= floatjson.SMALLEST:
            raw = text.encode() if isinstance(text, str) else text
            plain = await turns.run(len(raw), lambda: floatjson.read_message(raw, "request"))
        try:
            doc = (plain[0] if plain is not None
                   else await turns.run(len(text), lambda: orjson.loads(text)))
        except orjson.JSONDecodeError as exc:
            self.error(InvalidRequest.of("message", f"not valid JSON: {exc}"), None)
            return
        if not isinstance(doc, dict):
            self.error(InvalidRequest.of("message", "expected a JSON object"), None)
            return
        ref = doc.get("ref")
        kind = doc.get("type")
        try:
            if kind == "auth":
                self._authenticate(doc, ref)
                return
            principal = self.principal
            if principal is None:
                raise Unauthorized("authenticate first: {\"type\": \"auth\", \"key\": ...}")
            if kind == "subscribe":
                principal.require(Scope.READ)
                self._subscribe(doc, ref)
            elif kind == "unsubscribe":
                self._unsubscribe(doc, ref)
            elif kind == "submit":
                principal.require(Scope.SUBMIT)
                if self.services.quotas is not None:
                    self.services.quotas.take(principal.tenant)
                mint = self.services.reader.routes.mint
                if plain is not None:
                    item = intake.from_plain(plain[1], plain[2], self.settings.max_array_length,
                                             time.time(), mint)
                else:
                    item = await turns.run(len(text), lambda: intake.from_object(
                        doc.get("request"), self.settings.max_array_length, time.time(),
                        where="request", binary=self.settings.publish_binary, mint=mint))
                await self.submits.acquire()
                task = asyncio.get_running_loop().create_task(
                    self._submit(item, ref, from_message(doc, self.trace)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                raise InvalidRequest.of(
                    "type", "expected 'auth', 'subscribe', 'unsubscribe' or 'submit'")
        except ApiError as exc:
            if kind == "submit":
                self.services.stats.ws.reject(exc)
            self.error(exc, ref)
            if isinstance(exc, Unauthorized):
                self.close_code = CLOSE_POLICY

    def _authenticate(self, doc: dict[str, Any], ref: Any) -> None:
        keys = self.services.keys
        if keys is None:
            principal = OPEN
        else:
            key = doc.get("key")
            if not isinstance(key, str):
                raise Unauthorized("expected {\"type\": \"auth\", \"key\": \"<API key>\"}")
            principal = authenticate(keys, key)
        if self.principal is not None and self.principal != principal:
            raise Unauthorized("this socket is already authenticated with another key")
        self.principal = principal
        if keys is not None:
            self.credentials = f"Bearer {doc['key']}"
        self.sub.tenant = _stream_tenant(principal)
        self.reply({"type": "authenticated", "tenant": principal.tenant or None,
                    "scopes": sorted(principal.scopes)}, ref)

    def _keys(self, ids: list[str]) -> list[str]:
        tenant = self.principal.tenant if self.principal is not None else ""
        return [scoped(tenant, i) for i in ids]
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
        if (self.sub.watching + len(self.asking) + len(ids)
                > self.settings.ws_max_subscriptions):
            raise InvalidRequest.of("ids", f"at most {self.settings.ws_max_subscriptions} ids "
                                    "may be watched at once")
        self.reply({"type": "subscribed", "ids": ids}, ref)
        store, services = self.services.store, self.services
        here, elsewhere = [], []
        for key, rid in zip(self._keys(ids), ids, strict=True):
            if key in self.asking:
                continue  # watched once its owner answered
            # Published earlier, on another replica's partition, no result here: ask that one.
            if (owner_of(services, rid) is not None
                    and ((entry := store.get(key)) is None or entry.result is None)):
                elsewhere.append((key, rid))
            else:
                here.append(key)
        self._watch(here)
        if elsewhere:
            self.asking.update(key for key, _ in elsewhere)
            task = asyncio.get_running_loop().create_task(self._recall(elsewhere))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _watch(self, keys: list[str]) -> None:
        self.services.hub.watch(self.sub, keys)
        self.services.reader.waiting_for(keys)

    async def _recall(self, elsewhere: list[tuple[str, str]]) -> None:
        """Ask the replicas that read these ids' partitions (store key, id), all at once and
        beside the socket's other messages: the results they have are delivered, and the
        other ids watched, their partitions borrowed from where those replicas have read them
        (``usecase.recall``); ids unsubscribed meanwhile are dropped."""
        services = self.services
        try:
            results = await asyncio.gather(*(recall(services, key, rid, self.credentials)
                                             for key, rid in elsewhere))
        finally:
            still = {key for key, _ in elsewhere} & self.asking
            self.asking -= still
        watched = []
        for (key, _), result in zip(elsewhere, results, strict=True):
            if key not in still:
                continue
            if result is not None:
                self.sub.offer_watched(result)
            else:
                watched.append(key)
        self._watch(watched)

    def _unsubscribe(self, doc: dict[str, Any], ref: Any) -> None:
        if doc.get("all") is True:
            self.services.hub.unwatch_all(self.sub)
            self.reply({"type": "unsubscribed", "all": True}, ref)
            return
        ids = self._ids(doc)
        keys = self._keys(ids)
        self.asking.difference_update(keys)
        self.services.hub.unwatch(self.sub, keys)
        self.reply({"type": "unsubscribed", "ids": ids}, ref)

    async def _submit(self, item: intake.Prepared, ref: Any, trace: TraceHeaders) -> None:
        counts = self.services.stats.ws
        tenant = self.principal.tenant if self.principal is not None else ""
        try:
            outcome = await self._accept(item, tenant, trace)
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
        if outcome.result is not None:  # a re-submit, answered here or by another replica
            self.sub.offer_watched(outcome.result)
        else:
            self._watch([scoped(tenant, outcome.id)])

    async def _accept(self, item: intake.Prepared, tenant: str,
                      trace: TraceHeaders) -> Outcome:
        tracing = self.services.tracing
        locate = recaller(self.services, self.credentials)
        if tracing is None:
            return await self.services.acceptor.accept(item, tenant=tenant, trace=trace,
                                                       watched=True, locate=locate)
        with tracing.submit("submit /v1/ws", trace) as own:
            return await self.services.acceptor.accept(item, tenant=tenant, trace=own,
                                                       watched=True, locate=locate)

    async def pump(self) -> None:
        """Send the outbox until the socket goes away."""
        while True:
            for message in await self.sub.take():
                await self.ws.send_text(message.decode())

    async def flush(self) -> None:
        """Send the replies queued now (the error that explains a close), once the pump
        stopped; a client that does not read them within a second is closed anyway."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                for message in self.sub.take_control():
                    await self.ws.send_text(message.decode())

    async def close(self) -> None:
        self.services.hub.remove(self.sub)
        await cancel_and_wait(*self.tasks)


@router.websocket("/v1/ws")
async def results_socket(ws: WebSocket, services: ServicesDep) -> None:
    """Subscribe to results and submit requests over one socket."""
    await ws.accept()
    principal = ws.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        principal = OPEN if services.keys is None else None
    session = _Session(ws, services, principal)
    loop = asyncio.get_running_loop()
    sender = loop.create_task(session.pump(), name="ws-pump")
    limit = services.settings.ws_max_message_bytes
    services.stats.ws_opened += 1  # open ones are counted at the door (producer_api.admission)
    auth_by = loop.time() + services.settings.ws_auth_timeout_s
    try:
        while session.close_code is None:
            try:
                async with asyncio.timeout_at(None if session.principal is not None
                                              else auth_by):
                    message = await ws.receive()
            except TimeoutError:
                session.error(Unauthorized("not authenticated within "
                                           f"{services.settings.ws_auth_timeout_s:g} s"), None)
                session.close_code = CLOSE_POLICY
                break
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
        await cancel_and_wait(sender)
        await session.flush()  # the error that explains the close goes out before it
        await ws.close(session.close_code)
    except WebSocketDisconnect:
        pass
    finally:
        await cancel_and_wait(sender)
        await session.close()


def _stream_tenant(principal: Principal | None) -> str | None:
    """Whose results the ``all`` stream of this caller carries (None: everyone's)."""
    if principal is None:
        return ""  # not authenticated: it may not subscribe yet
    return None if principal.sees_every_tenant else principal.tenant
