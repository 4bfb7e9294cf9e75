"""``Client``: the calcstream API over HTTP and one shared WebSocket (see the package).

HTTP goes through aiohttp: a W1 ``compute_array`` cost this process 1.5 ms of CPU through
httpx and a plain aiohttp ``POST`` of the same request 0.33 ms (bench/FINDINGS.md, finding 25).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np
import numpy.typing as npt
import orjson

from calcstream import __version__
from calcstream.client.bodies import (
    JSON,
    NPY,
    OCTETS,
    ArrayLike,
    BatchCall,
    Limits,
    binary_request,
    is_numeric_array,
    new_id,
    plan_batches,
    request_body,
)
from calcstream.client.errors import (
    CalculationError,
    ClientError,
    Conflict,
    InvalidRequest,
    NotAllowed,
    NotFound,
    TimedOut,
    Unavailable,
)
from calcstream.client.subscriptions import Delivery, ResultSocket, Watch
from core.tasks import cancel_and_wait
from schemas.messages import CalcResult

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
_RETRIABLE = frozenset({429, 503})
_INVALID = frozenset({413, 415, 422})
_PASSING = frozenset({"broker_unavailable", "not_started"})
"""Error codes of batch items that may well be accepted when posted again."""
_POSTS_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, read whole."""

    method: str
    path: str
    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class Client:
    """A connection to one calcstream API; ``async with`` starts and stops it."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = 30.0,
                 connect_timeout: float = 5.0, retries: int = 3, max_retry_wait: float = 30.0,
                 window: int = 10_000, api_key: str | None = None) -> None:
        """``timeout`` bounds each HTTP call; ``retries`` is how often a 503/429 or a failed
        connection is retried; ``window`` is how many results one stream awaits at once;
        ``api_key`` is sent as ``Authorization: Bearer`` on every call and the websocket's
        handshake (an API without keys needs none)."""
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        ws_scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
        if ws_scheme is None or not parts.netloc:
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        self.ws_url = urlunsplit((ws_scheme, parts.netloc, parts.path + "/v1/ws", "", ""))
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.window = window
        self._auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http: aiohttp.ClientSession | None = None
        self._socket: ResultSocket | None = None
        self._socket_lock = asyncio.Lock()
        self._limits: Limits | None = None

    async def start(self) -> None:
        """Create the HTTP connection pool (the websocket opens when first needed)."""
        if self._http is None:
            # ``timeout`` bounds each read and ``connect_timeout`` each new connection; waiting
            # for a free connection of the pool is not bounded.
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                              sock_read=self.timeout),
                headers={"user-agent": f"calcstream-client/{__version__}", **self._auth},
            )

    async def stop(self) -> None:
        """Close the websocket and the connection pool; safe to call twice."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- one request ------------------------------------------------------------------------

    async def submit(self, op: str, data: ArrayLike, *, args: Mapping[str, Any] | None = None,
                     id: str | None = None, deadline: float | None = None) -> str:
        """Submit one calculation; returns its id once the broker has acknowledged it.

        ``deadline`` is an absolute UNIX time (``time.time() + 5``): still queued then, the
        request is answered ``expired`` instead of computed. Re-submitting the same ``id`` with
        the same request is harmless; with a different one it is a ``Conflict``.
        """
        request_id = id or new_id()
        _raise_for(await self._post_one(request_id, op, data, args, deadline))
        return request_id

    async def result(self, id: str, timeout: float | None = 30.0) -> CalcResult:
        """The result of ``id`` (whatever its status), waiting up to ``timeout`` seconds."""
        with await self.watch(window=1) as watch:
            await watch.add(id)
            return await self._first(watch, id, timeout)

    async def compute(self, op: str, data: ArrayLike, *, args: Mapping[str, Any] | None = None,
                      id: str | None = None, deadline: float | None = None,
                      timeout: float | None = 30.0) -> CalcResult:
        """Submit and wait for the result; ``CalculationError`` unless its status is ok."""
        request_id = id or new_id()
        # Watch before submitting, so that even the fastest result finds its waiter.
        with await self.watch(window=1) as watch:
            await watch.add(request_id)
            await self.submit(op, data, args=args, id=request_id, deadline=deadline)
            result = await self._first(watch, request_id, timeout)
        if result.status != "ok":
            raise CalculationError(result)
        return result

    async def compute_array(self, op: str, data: ArrayLike, *,
                            args: Mapping[str, Any] | None = None, id: str | None = None,
                            deadline: float | None = None,
                            timeout: float = 30.0) -> npt.NDArray[np.float64]:
        """``compute``, answered with the result's values as a float64 array (a scalar result
        as a 0-d one): the submit asks for a binary result and waits for it on the same call,
        so neither the worker nor the API nor this client writes or parses the result's
        numbers as text (docs/contracts.md, "Binary results"). A result slower than the API's
        ``max_wait_s`` is awaited over the WebSocket, then fetched as ``.npy``.
        ``CalculationError`` unless its status is ok."""
        request_id = id or new_id()
        started = time.monotonic()
        response = await self._post_one(request_id, op, data, args, deadline,
                                        wait=timeout, accept=NPY)
        _raise_for(response)
        if response.status_code == 202:  # still queued when the API's wait ended
            late = await self.result(request_id, max(0.0, timeout - (time.monotonic() - started)))
            if late.status != "ok":
                raise CalculationError(late)
            response = await self._send("GET", f"/v1/calculations/{request_id}",
                                        headers={"accept": NPY})
            _raise_for(response)
        if response.headers.get("content-type", "").startswith(NPY):
            values: npt.NDArray[np.float64] = np.load(io.BytesIO(response.content),
                                                      allow_pickle=False)
            return values
        result = CalcResult.model_validate_json(response.content)  # a result without values
        if result.status != "ok":
            raise CalculationError(result)
        raise ClientError(f"the API answered {request_id!r} without its values as .npy")

    # -- many requests ----------------------------------------------------------------------

    async def stream(self, ids: Iterable[str] | AsyncIterable[str], *,
                     timeout: float | None = None) -> AsyncIterator[CalcResult]:
        """The results of ``ids`` as they arrive, over one websocket; ends when all came.

        ``ids`` may be an async iterable that is still growing (ids of requests being sent);
        at most ``window`` of them are awaited at once. ``timeout`` bounds the whole stream:
        an id the API never accepted, or has forgotten (after ``result_ttl_s``), never comes.
        """
        async for delivery in self.deliveries(ids, timeout=timeout):
            yield delivery.result()

    async def map(self, op: str, arrays: Iterable[ArrayLike] | npt.NDArray[Any], *,
                  args: Mapping[str, Any] | None = None,
                  timeout: float | None = None) -> list[CalcResult]:
        """Apply ``op`` to every array through the batch endpoint; results in input order.

        Arrays of equal length go as ``.npy`` bodies (a 2-D array is one request per row),
        others as JSON arrays, in chunks within the server's limits. Results with status
        error or expired are returned like the others. ``InvalidRequest`` if the API refuses
        an item (items of other chunks may have been submitted).
        """
        limits = await self.limits()
        ids, posts = plan_batches(op, arrays, dict(args or {}), limits, max(1, self.window // 2))
        if not ids:
            return []
        got: dict[str, Delivery] = {}
        try:
            async with asyncio.timeout(timeout):
                with await self.watch() as watch:
                    posting = asyncio.create_task(self._post_all(posts, ids, watch))
                    try:
                        while len(got) < len(ids):
                            delivery = await watch.get()
                            if delivery is not None:
                                got[delivery.id] = delivery
                        await posting
                    except ClientError:
                        if posting.done() and not posting.cancelled() and posting.exception():
                            posting.result()  # the posting's own error, not the watch's echo
                        raise
                    finally:
                        await cancel_and_wait(posting)
        except TimeoutError:
            raise TimedOut(f"{len(ids) - len(got):,} of {len(ids):,} results did not arrive "
                           f"within {timeout:g}s") from None
        return [got[request_id].result() for request_id in ids]

    async def deliveries(self, ids: Iterable[str] | AsyncIterable[str], *,
                         timeout: float | None = None) -> AsyncIterator[Delivery]:
        """Like ``stream``, with each result's JSON bytes as well (``Delivery.raw``)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        with await self.watch() as watch:
            feeder = asyncio.create_task(_feed(watch, ids))
            try:
                fed = False
                while not (fed and not watch.pending and not watch.queued):
                    remaining = None if deadline is None else deadline - loop.time()
                    try:
                        delivery = await asyncio.wait_for(watch.get(), remaining)
                    except TimeoutError:
                        raise TimedOut(f"{len(watch.pending):,} results did not arrive within "
                                       f"{timeout:g}s") from None
                    if delivery is None:
                        fed = True
                        if feeder.done() and not feeder.cancelled() and \
                                (exc := feeder.exception()):
                            raise exc
                        continue
                    yield delivery
            finally:
                await cancel_and_wait(feeder)

    async def watch(self, window: int | None = None) -> Watch:
        """A ``Watch`` on the client's websocket: add ids, ``get()`` results as they come."""
        socket = await self._results_socket()
        return Watch(socket, window or self.window)

    async def post_batch(self, body: bytes, *, content_type: str,
                         params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``POST /v1/calculations/batch`` with a ready body; the ``BatchSummary`` answer.

        Retried on 503 like every call, and posted again while the answer refuses items only
        for a moment (the broker did not acknowledge them in time): give every item an id (a
        ``.npy`` body an ``id_prefix``), so that the API recognises the items it already has
        and nothing is published twice. The last answer counts those among ``duplicates``.
        """
        for attempt in range(self.retries + 1):
            response = await self._send("POST", "/v1/calculations/batch", content=body,
                                        params=params, headers={"content-type": content_type})
            _raise_for(response)
            summary: dict[str, Any] = orjson.loads(response.content)
            if attempt == self.retries or not _refused_for_now(summary):
                break
            logger.debug("batch: %d items refused for now, posting again", summary["rejected"])
            await asyncio.sleep(_backoff(attempt + 2))
        return summary

    # -- the API itself ---------------------------------------------------------------------

    async def ready(self) -> bool:
        """Whether the API is ready for traffic (broker reachable, results caught up)."""
        response = await self._send("GET", "/readyz", retry=False)
        return response.status_code == 200

    async def limits(self) -> Limits:
        """The API's limits, asked once."""
        if self._limits is None:
            response = await self._send("GET", "/v1/limits")
            if response.status_code == 404:  # an API from before /v1/limits
                self._limits = Limits()
            else:
                _raise_for(response)
                self._limits = Limits.from_document(orjson.loads(response.content))
        return self._limits

    # -- plumbing ---------------------------------------------------------------------------

    async def _first(self, watch: Watch, request_id: str, timeout: float | None) -> CalcResult:
        try:
            delivery = await asyncio.wait_for(watch.get(), timeout)
        except TimeoutError:
            raise TimedOut(f"no result for {request_id!r} within {timeout:g}s; "
                           f"{await self._whereabouts(request_id)}") from None
        if delivery is None:  # only after a failure, which get() raises
            raise ClientError(f"no result for {request_id!r}")
        return delivery.result()

    async def _whereabouts(self, request_id: str) -> str:
        """What the API knows of an id whose result is late, for the error message."""
        try:
            response = await self._send("GET", f"/v1/calculations/{request_id}", retry=False)
        except Unavailable as exc:
            return str(exc)
        if response.status_code == 404:
            return "the API does not know this id (never accepted, or forgotten)"
        if response.status_code == 200 and response.json().get("status") == "queued":
            return "the API has it queued (is a worker running?)"
        if response.status_code == 200:
            return "it has just been answered: ask again"
        return f"the API answers {response.status_code} for it"

    async def _results_socket(self) -> ResultSocket:
        self._require()
        async with self._socket_lock:
            if self._socket is None or self._socket.failure is not None:
                limits = await self.limits()
                socket = ResultSocket(self.ws_url, open_timeout=self.connect_timeout,
                                      reconnects=self.retries,
                                      max_message_bytes=limits.ws_max_message_bytes,
                                      headers=self._auth)
                await socket.start()
                self._socket = socket
            return self._socket

    async def _post_one(self, request_id: str, op: str, data: ArrayLike,
                        args: Mapping[str, Any] | None, deadline: float | None, *,
                        wait: float | None = None, accept: str | None = None
                        ) -> Answer:
        """``POST /v1/calculations`` of one request: a NumPy array as raw float64 with the op
        in the query, anything else as JSON; ``wait`` and ``accept`` as the API reads them."""
        query = {} if wait is None else {"wait": f"{wait:g}"}
        headers = {} if accept is None else {"accept": accept}
        if is_numeric_array(data):
            body, params = binary_request(request_id, op, data, args, deadline)
            return await self._send("POST", "/v1/calculations", content=body,
                                    params={**params, **query},
                                    headers={"content-type": OCTETS, **headers})
        return await self._send("POST", "/v1/calculations",
                                content=request_body(request_id, op, data, args, deadline),
                                params=query or None, headers={"content-type": JSON, **headers})

    def _require(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise ClientError("the client is not started: use `async with Client(...) as "
                              "client:` or await client.start()")
        return self._http

    async def _send(self, method: str, path: str, *, content: bytes | None = None,
                    params: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None,
                    retry: bool = True) -> Answer:
        """One HTTP call; 503/429 and connection failures are retried ``retries`` times."""
        http = self._require()
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            final = attempt == attempts - 1
            try:
                async with http.request(method, self.base_url + path, data=content,
                                        params=params, headers=headers,
                                        allow_redirects=False) as raw:
                    response = Answer(method, path, raw.status, raw.reason or "", raw.headers,
                                      await raw.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                if final:
                    raise Unavailable(f"cannot reach the calcstream API at {self.base_url}: "
                                      f"{_reason(exc)}") from None
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code in _RETRIABLE and not final:
                wait = _retry_after(response)
                logger.debug("%s %s: %d, retrying in %.1fs", method, path,
                             response.status_code, wait if wait is not None else -1)
                await asyncio.sleep(min(self.max_retry_wait,
                                        wait if wait is not None else _backoff(attempt)))
                continue
            return response
        raise AssertionError("unreachable")

    async def _post_all(self, posts: list[BatchCall], ids: list[str], watch: Watch) -> None:
        """Post a map's chunks, a few at a time, each once its ids are watched.

        Watching first means every result finds its waiter; a chunk is at most half the
        watch's window, so the window always has room for one posted chunk's results.
        """
        slots = asyncio.Semaphore(_POSTS_IN_FLIGHT)

        async def post(plan: BatchCall) -> None:
            try:
                summary = await self.post_batch(plan.body(), content_type=plan.content_type,
                                                params=plan.params)
            finally:
                slots.release()
            if summary.get("rejected"):
                raise _rejected(summary, plan.first)

        tasks: list[asyncio.Task[None]] = []
        try:
            for plan in posts:
                for request_id in ids[plan.first:plan.first + plan.count]:
                    await watch.add(request_id)
                await slots.acquire()
                tasks.append(asyncio.create_task(post(plan)))
            await asyncio.gather(*tasks)
        except ClientError as exc:
            watch.fail(exc)
            raise
        except Exception as exc:
            watch.fail(ClientError(f"submitting failed: {exc!r}"))
            raise
        finally:
            for task in tasks:
                await cancel_and_wait(task)


# -- answers ------------------------------------------------------------------------------


def _raise_for(response: Answer) -> None:
    """Raise the ``ClientError`` an answer stands for; nothing for a 2xx."""
    status = response.status_code
    if status < 300:
        return
    try:
        error = orjson.loads(response.content).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    message = str(error.get("message") or response.text[:200] or response.reason_phrase)
    details: dict[str, Any] = {"status": status, "code": error.get("code"),
                               "fields": error.get("fields")}
    if status in _INVALID:
        raise InvalidRequest(message, **details)
    if status == 409:
        raise Conflict(message, **details)
    if status == 404:
        raise NotFound(message, **details)
    if status in (401, 403):
        raise NotAllowed(message, **details)
    if status in _RETRIABLE:
        raise Unavailable(f"the API is unavailable ({status}): {message}",
                          retry_after=_retry_after(response), **details)
    raise ClientError(f"unexpected answer {status} to {response.method} "
                      f"{response.path.partition('?')[0]}: {message}", **details)


def _refused_for_now(summary: Mapping[str, Any]) -> bool:
    """Whether a batch answer refused items for a reason that passes (the broker was slow)."""
    return any(e.get("code") in _PASSING for e in summary.get("errors") or [])


def _rejected(summary: Mapping[str, Any], first: int) -> InvalidRequest:
    """The items a batch call refused, numbered in the whole input."""
    errors = summary.get("errors") or []
    fields_ = [{"field": f"{first + e['index']}.{e.get('field') or 'data'}",
                "message": e["message"]} for e in errors]
    head = fields_[0] if fields_ else {"field": "?", "message": "rejected"}
    return InvalidRequest(f"the API refused {summary['rejected']:,} items; item "
                          f"{head['field']}: {head['message']}", fields=fields_)


def _retry_after(response: Answer) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to backing off


def _backoff(attempt: int) -> float:
    return min(0.1 * 2.0 ** attempt, 2.0)


def _reason(exc: aiohttp.ClientError | TimeoutError) -> str:
    """What went wrong, in words: the innermost OS error where there is one."""
    text = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            # asyncio words a refused connection as "Connect call failed": say what errno says.
            text = (os.strerror(cause.errno) if cause.errno > 0 else cause.strerror or text)
            text = text[:1].lower() + text[1:]
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{text} (is it running? `calcstream dev` starts one)"
    return text


async def _feed(watch: Watch, ids: Iterable[str] | AsyncIterable[str]) -> None:
    """Add ``ids`` to ``watch`` as the window allows, then mark the end."""
    try:
        if isinstance(ids, AsyncIterable):
            async for request_id in ids:
                await watch.add(request_id)
        else:
            for request_id in ids:
                await watch.add(request_id)
    finally:
        watch.end()

