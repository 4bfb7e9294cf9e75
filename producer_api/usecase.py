"""A single submit and the state of one id, with no HTTP in them: what ``POST
/v1/calculations`` and ``GET /v1/calculations/{id}`` do, for the FastAPI routes
(``routes/calculations.py``) and the ASGI fast path (``fastpath.py``) alike. A submit is a JSON
request, or binary data (raw float64 or ``.npy``) with its op in the query. And asking the
replica that reads an id's reply partition about it (forwarding.py), for a ``GET``, a
``?wait=`` re-post and a WebSocket watch alike."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

import orjson

from producer_api import intake
from producer_api.deps import Services
from producer_api.errors import InvalidRequest, NotFound, Unavailable, UnsupportedMediaType
from producer_api.forwarding import FORWARDED_HEADER, READ_TO_HEADER, OwnerAnswer
from producer_api.rendering import JSON_HEADER, NPY, OCTETS, Headers, render, wanted
from producer_api.store import PUBLISHING, scoped
from schemas.messages import ID_MAX_LENGTH, RESULT_STATUSES

JSON_TYPES = ("", "application/json")
SUBMIT_TYPES = (*JSON_TYPES, OCTETS, NPY)
QUEUED_MAX_BYTES = 4 * ID_MAX_LENGTH + 256
"""More than any queued state's document (``store.Entry.state_document``: an id, an op, a
time); a larger answer is a result."""
BINARY_QUERY = ("op", "args", "id", "deadline")
"""What a binary single submit reads from the query string."""


class Answer(NamedTuple):
    """What a submit or a state answers: status, body, and headers (``content-type`` first;
    a submit's then ``location``)."""

    status: int
    body: bytes
    headers: Headers


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value: parameters dropped, lower case."""
    return content_type.split(";")[0].strip().lower()


def require_submit_type(content_type: str) -> str:
    """The media type of a single submit's body; ``UnsupportedMediaType`` unless it is JSON
    (or none, read as JSON), raw float64 values or ``.npy``."""
    ctype = media_type(content_type)
    if ctype not in SUBMIT_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r}; send application/json, {OCTETS} "
                                   f"(raw little-endian float64, op in the query) or {NPY}")
    return ctype


async def submit_one(services: Services, body: bytes, wait: float | None, tenant: str = "",
                     content_type: str = "", query: Mapping[str, str] | None = None,
                     trace: Sequence[tuple[str, bytes]] = (), want: str = "",
                     credentials: str = "") -> Answer:
    """Accept one body of ``tenant``'s. A JSON body is the whole request; a binary one
    (``content_type`` from ``require_submit_type``) carries the data, and ``query`` the op,
    args, id and deadline. The record carries the ``trace`` headers, and asks for a binary
    result when the client wants one (``want``, from ``rendering.wanted``); a result answered
    at once is rendered as ``want`` says. ``credentials``: the client's ``Authorization``,
    for asking another replica about a re-posted id (``recall``).

    Counts the request as accepted (or deduplicated); callers count rejections.
    """
    s = services.settings
    if content_type in JSON_TYPES:
        item = await services.turns.run(len(body), lambda: intake.from_json(
            body, s.max_array_length, time.time(), s.publish_binary, services.reader.routes.mint))
    else:
        item = _from_binary(body, content_type == NPY, query or {}, s.max_array_length,
                            services.reader.routes.mint)
    if want:
        item = dataclasses.replace(item, headers=[*item.headers, intake.WANTS_BINARY_RESULT])
    outcome = await services.acceptor.accept(item, min(wait, s.max_wait_s) if wait else 0.0,
                                             tenant, trace, locate=recaller(services, credentials))
    if outcome.existing:
        services.stats.single.deduplicated += 1
    else:
        services.stats.single.accepted += 1
    location = (b"location", f"/v1/calculations/{outcome.id}".encode())
    if outcome.result is not None:
        result = outcome.result
        answer, headers = await services.turns.run(len(result), lambda: render(result, want))
        return Answer(200, answer, [*headers, location])
    return Answer(202, b'{"id":"%s","status":"queued"}' % outcome.id.encode(),
                  [JSON_HEADER, location])


async def state_of(services: Services, request_id: str, tenant: str,
                   headers: Mapping[str, str]) -> Answer:
    """The current state of ``tenant``'s request ``request_id``: queued, or its result as the
    client's ``Accept`` (in ``headers``, lower-case names) wants it. Raises ``NotFound`` for an
    id this deployment never accepted or has forgotten, ``Unavailable`` while this replica is
    still reading the id's reply partition."""
    key = scoped(tenant, request_id)
    entry = services.store.get(key)
    vouched: Headers = []
    if entry is None or entry.result is None:
        forwarded = await ask_owner(services, request_id, headers)
        if forwarded is not None and (entry is None or forwarded.status != 404):
            return Answer(forwarded.status, forwarded.body, forwarded.headers)
        if forwarded is None:
            # Accepted by another replica, or before a restart, or here with an id whose reply
            # partition is another replica's: its result is on that partition, which this
            # replica reads now (its own, or borrowed) up to where it ends.
            reader = services.reader
            partition = reader.routes.partition_of(request_id)
            if not await reader.complete(partition):
                raise Unavailable("this replica is still reading the results of that id's "
                                  "partition; retry")
            if FORWARDED_HEADER in headers:
                # Asked by another replica: up to where this one has read the partition, taken
                # before looking again, so that a result not found here comes after it.
                read_to = await reader.read_to(partition)
                if read_to is not None:
                    vouched = [(READ_TO_HEADER.encode(), str(read_to).encode())]
            entry = services.store.get(key)
        # else accepted here, and its owner has no result for it yet: as known here.
    if entry is None or entry.state == PUBLISHING:
        missing = NotFound(f"no calculation {request_id!r} here (never accepted, or forgotten)")
        if not vouched:
            raise missing
        return Answer(missing.status, missing.body_bytes(), [JSON_HEADER, *vouched])
    document, want = entry.state_document(), wanted(headers.get("accept", ""))
    body, rendered = await services.turns.run(len(document), lambda: render(document, want))
    return Answer(200, body, rendered if entry.result is not None else [*rendered, *vouched])


def _from_binary(body: bytes, npy: bool, query: Mapping[str, str], max_values: int,
                 mint: Callable[[], str]) -> intake.Prepared:
    op = query.get("op")
    if not op:
        raise InvalidRequest.of("query.op", "a binary body needs ?op= (and ?args= if the op "
                                "takes any)")
    raw_deadline = query.get("deadline")
    try:
        deadline = None if raw_deadline is None else float(raw_deadline)
    except ValueError:
        raise InvalidRequest.of("query.deadline", "expected a UNIX time in seconds") from None
    args = intake.parse_args(query.get("args"), "query.args")
    return intake.from_binary(body, op, args, query.get("id"), deadline, max_values,
                              time.time(), npy=npy, mint=mint)


def owner_of(services: Services, request_id: str) -> str | None:
    """The URL of the replica that reads ``request_id``'s reply partition, when that is another
    one and replicas advertise their URLs (forwarding.py)."""
    forwarder = services.forwarder
    if forwarder is None:
        return None
    owner = services.reader.routes.owner_elsewhere(request_id)
    return None if owner == forwarder.own_url else owner


async def ask_owner(services: Services, request_id: str, headers: Mapping[str, str],
                    ) -> OwnerAnswer | None:
    """The owning replica's answer about an id whose partition this one does not read, with
    the client's ``headers`` (credentials, ``Accept``); None to read the partition here (no
    such replica, it could not answer, or this request was itself forwarded)."""
    owner = owner_of(services, request_id)
    if owner is None or FORWARDED_HEADER in headers:
        return None
    assert services.forwarder is not None
    return await services.forwarder.state(owner, request_id, headers)


async def recall(services: Services, key: str, request_id: str, credentials: str,
                 ) -> bytes | None:
    """Before a wait here for the result of an id published earlier (a ``?wait=`` re-post, a
    WebSocket watch) whose partition another replica reads: ask that replica. Its result
    document (JSON) when it has one; else None, and when it said up to where it has read the
    partition, the wait borrows the partition from there (``ResultReader.note``), not from the
    recovery window."""
    answer = await ask_owner(services, request_id,
                             {"authorization": credentials} if credentials else {})
    if answer is None:
        return None
    if answer.read_to is not None:
        services.reader.note(key, answer.read_to)
        return None
    if answer.status != 200:
        return None
    # 200 without a read position: the result, or the queued state of an owner that could not
    # vouch for what it read; only the small ones need reading to tell.
    body = answer.body
    if len(body) > QUEUED_MAX_BYTES:
        return body
    doc = orjson.loads(body)
    return body if isinstance(doc, dict) and doc.get("status") in RESULT_STATUSES else None


def recaller(services: Services, credentials: str,
             ) -> Callable[[str, str], Awaitable[bytes | None]] | None:
    """``recall`` with the client's credentials, for ``Acceptor.accept``; None when replicas
    do not advertise their URLs."""
    if services.forwarder is None:
        return None
    return lambda key, request_id: recall(services, key, request_id, credentials)
