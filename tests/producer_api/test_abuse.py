"""Bad input and abuse: slow bodies, bodies that are not JSON, foreign pages, overload, floods
of oversized uploads.

Slow clients are driven over raw HTTP/1.1 connections (``Raw``), so that a test decides when
every byte goes out and can see the server close the connection. The stacks here have small
limits of their own: sub-second body deadlines, two requests and two sockets at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.producer_api.conftest import ApiStack, api_settings, new_deployment
from tests.producer_api.test_metrics import delta, scrape, until

BODY_TIMEOUT = 0.8
ALLOWED = "http://good.example"


@dataclass
class RawResponse:
    """A response as read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Raw:
    """One HTTP/1.1 connection written by hand, byte by byte if need be."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, stack: ApiStack) -> AsyncIterator[Raw]:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        try:
            yield cls(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def head(self, path: str, headers: dict[str, str], method: str = "POST") -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def chunk(self, data: bytes) -> None:
        """One chunk of a chunked body; ``b""`` ends the body."""
        await self.send(b"%x\r\n%s\r\n" % (len(data), data))

    async def trickle(self, data: bytes, every: float, chunked: bool = False) -> None:
        """Send ``data`` one byte at a time (the client this module is about); stops quietly
        when the server hangs up."""
        with contextlib.suppress(ConnectionError):
            for i in range(len(data)):
                await (self.chunk if chunked else self.send)(data[i:i + 1])
                await asyncio.sleep(every)  # the client's pace, not a wait for an event

    async def interim(self, timeout: float = 5.0) -> int:
        """The status of the next (1xx) response head."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        return int(head.split(b" ", 2)[1])

    async def response(self, timeout: float = 5.0) -> RawResponse:
        """The next final response (1xx ones skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                head = await self.reader.readuntil(b"\r\n\r\n")
                status_line, *lines = head.decode("latin-1").split("\r\n")
                status = int(status_line.split(" ", 2)[1])
                if status >= 200:
                    break
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return RawResponse(status, headers, body)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (end of stream)."""
        with contextlib.suppress(ConnectionError):
            return await asyncio.wait_for(self.reader.read(), timeout) == b""
        return True


@contextlib.asynccontextmanager
async def running(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    """Run ``coro`` as a task for the duration of the block."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def stack(bootstrap: str, **overrides: Any) -> Iterator[ApiStack]:
    with ApiStack(api_settings(new_deployment(bootstrap), **overrides)) as started:
        yield started


@pytest.fixture(scope="module")
def slow(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """An API (submit fast path on) that gives bodies BODY_TIMEOUT seconds."""
    yield from stack(kafka_bootstrap, body_timeout_s=BODY_TIMEOUT)


@pytest.fixture(scope="module")
def slow_routed(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """The same with POST /v1/calculations served by FastAPI (fast_path off)."""
    yield from stack(kafka_bootstrap, body_timeout_s=BODY_TIMEOUT, fast_path=False)


@pytest.fixture(scope="module")
def door(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """An API that takes two requests and two sockets at once, sockets from one page only."""
    yield from stack(kafka_bootstrap, max_concurrent_requests=2, ws_max_connections=2,
                     ws_allowed_origins=f" {ALLOWED}/ , https://dash.example:8443")


def submission(tag: str) -> bytes:
    return orjson.dumps({"id": f"{tag}-{uuid.uuid4().hex[:8]}", "op": "sum", "data": [1, 2]})


def assert_cut_off(response: RawResponse, started: float) -> None:
    """A 408 body_timeout that came at the deadline, announcing the connection's end."""
    elapsed = time.monotonic() - started
    assert response.status == 408, response.body
    assert response.json()["error"]["code"] == "body_timeout"
    assert response.headers["connection"] == "close"
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 2, elapsed


# Slow bodies.

@pytest.fixture(params=["slow", "slow_routed"], ids=["fast_path", "fastapi"])
def submit_stack(request: pytest.FixtureRequest) -> ApiStack:
    """Each way POST /v1/calculations is served."""
    api: ApiStack = request.getfixturevalue(request.param)
    return api


async def test_a_trickled_submit_is_cut_off_at_the_deadline(submit_stack: ApiStack) -> None:
    api = submit_stack
    body = submission("trickled")
    async with Raw.open(api) as raw:
        started = time.monotonic()
        await raw.head("/v1/calculations", {"Content-Type": "application/json",
                                            "Content-Length": str(len(body))})
        # Every byte comes well within the deadline; the body as a whole does not.
        async with running(raw.trickle(body, every=0.05)):
            response = await raw.response()
        assert_cut_off(response, started)
        assert "did not arrive within" in response.json()["error"]["message"]
        assert await raw.closed_by_server()


def npy(matrix: np.ndarray[Any, Any]) -> bytes:
    out = io.BytesIO()
    np.save(out, matrix)
    return out.getvalue()


@pytest.mark.parametrize("ctype, body", [
    ("application/json", b"[" + b",".join(submission("array") for _ in range(3)) + b"]"),
    ("application/x-npy", npy(np.ones((4, 3)))),
], ids=["json-array", "npy"])
async def test_a_trickled_batch_body_has_one_deadline_in_all(
    slow: ApiStack, ctype: str, body: bytes,
) -> None:
    async with Raw.open(slow) as raw:
        started = time.monotonic()
        await raw.head("/v1/calculations/batch?op=sum", {"Content-Type": ctype,
                                                         "Transfer-Encoding": "chunked"})
        async with running(raw.trickle(body, every=0.05, chunked=True)):
            response = await raw.response()
        assert_cut_off(response, started)
        assert await raw.closed_by_server()


async def test_an_ndjson_stream_runs_past_the_deadline_while_its_lines_keep_coming(
    slow: ApiStack,
) -> None:
    lines = [submission("ndjson-ok") + b"\n" for _ in range(6)]
    async with Raw.open(slow) as raw:
        started = time.monotonic()
        await raw.head("/v1/calculations/batch", {"Content-Type": "application/x-ndjson",
                                                  "Transfer-Encoding": "chunked"})
        for line in lines:  # each line takes ~0.3 s, the stream ~1.8 s
            await raw.chunk(line[:10])
            await asyncio.sleep(0.15)  # the client's pace
            await raw.chunk(line[10:])
            await asyncio.sleep(0.15)
        await raw.chunk(b"")
        response = await raw.response()
    assert time.monotonic() - started > 2 * BODY_TIMEOUT
    assert response.status == 202, response.body
    assert response.json()["accepted"] == len(lines)


async def test_an_ndjson_line_not_completed_in_time_cuts_the_stream_off_keeping_earlier_lines(
    slow: ApiStack,
) -> None:
    complete = b"".join(submission("ndjson-cut") + b"\n" for _ in range(3))
    async with Raw.open(slow) as raw:
        await raw.head("/v1/calculations/batch", {"Content-Type": "application/x-ndjson",
                                                  "Transfer-Encoding": "chunked"})
        # Taken before sending: the server's clock for line 3 starts once it has read line 2,
        # which may be before this task resumes after the send.
        started = time.monotonic()
        await raw.chunk(complete + b'{"op": "sum", "da')  # then nothing more
        response = await raw.response()
        assert_cut_off(response, started)
        assert await raw.closed_by_server()
    doc = response.json()
    assert doc["error"]["message"].startswith("line 3 was not completed within 0.8 s")
    assert "3 accepted and 0 rejected" in doc["error"]["message"]
    summary = doc["summary"]
    assert (summary["accepted"], summary["rejected"]) == (3, 0)
    async with httpx.AsyncClient(base_url=slow.base_url, timeout=10) as http:
        for request_id in summary["ids"]:
            state = await http.get(f"/v1/calculations/{request_id}")
            assert state.status_code == 200 and state.json()["status"] == "queued", state.text


async def test_a_cut_off_is_counted_as_a_rejection(slow: ApiStack) -> None:
    async with httpx.AsyncClient(base_url=slow.base_url, timeout=10) as http:
        before = await scrape(http)
        async with Raw.open(slow) as raw:
            await raw.head("/v1/calculations", {"Content-Type": "application/json",
                                                "Content-Length": "100"})
            await raw.send(b'{"op"')
            assert (await raw.response()).status == 408
        after = await scrape(http)
    assert delta(after, before, "calcstream_api_requests_rejected_total", via="single",
                 status="408", code="body_timeout") == 1


# Bodies that are not JSON.

NOT_JSON: dict[str, dict[str, Any]] = {
    # A JSON document, refused for what it is labelled.
    "text/plain": {"content": submission("text"), "headers": {"content-type": "text/plain"}},
    "application/x-www-form-urlencoded": {"data": {"op": "sum", "data": "1"}},
    "multipart/form-data": {"files": {"body": ("submit.json", submission("multipart"),
                                               "application/json")}},
}


@pytest.mark.parametrize("ctype", list(NOT_JSON))
async def test_a_submit_that_is_not_json_is_415_naming_what_is_accepted(
    submit_stack: ApiStack, ctype: str,
) -> None:
    async with httpx.AsyncClient(base_url=submit_stack.base_url, timeout=10) as http:
        before = await scrape(http)
        response = await http.post("/v1/calculations", **NOT_JSON[ctype])
        after = await scrape(http)
    assert response.request.headers["content-type"].startswith(ctype)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error == {"code": "unsupported_media_type",
                     "message": f"Content-Type {ctype!r}; send application/json, "
                     "application/octet-stream (raw little-endian float64, op in the query) "
                     "or application/x-npy"}
    assert delta(after, before, "calcstream_api_requests_rejected_total", via="single",
                 status="415", code="unsupported_media_type") == 1


# Overload.

async def test_past_the_concurrency_limit_requests_are_shed_at_once(door: ApiStack) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
               "Expect": "100-continue"}
    async with contextlib.AsyncExitStack() as held, \
            httpx.AsyncClient(base_url=door.base_url, timeout=10) as http:
        before = await scrape(http)
        raws = [await held.enter_async_context(Raw.open(door)) for _ in range(2)]
        for raw in raws:
            await raw.head("/v1/calculations", headers)
            # 100 Continue: the server has taken the request in and started reading its body.
            assert await raw.interim() == 100
        started = time.monotonic()
        shed = await http.post("/v1/calculations", content=submission("shed"),
                               headers={"content-type": "application/json"})
        assert time.monotonic() - started < 1.0
        assert shed.status_code == 503, shed.text
        assert shed.headers["retry-after"] == str(door.settings.retry_after_s)
        assert shed.json()["error"]["code"] == "overloaded"
        assert (await http.get("/v1/calculations/some-id")).status_code == 503
        assert (await http.post("/v1/calculations/batch", json=[{"op": "sum", "data": [1]}])
                ).status_code == 503
        for path in ("/healthz", "/readyz", "/metrics", "/v1/stats", "/v1/ops", "/docs",
                     "/openapi.json", "/dashboard"):
            assert (await http.get(path)).status_code == 200, path
        after = await scrape(http)
        for raw in raws:
            await raw.chunk(submission("held"))
            await raw.chunk(b"")
            assert (await raw.response()).status == 202
        assert (await http.get("/healthz")).status_code == 200
    async with httpx.AsyncClient(base_url=door.base_url, timeout=10) as http:
        response = await http.post("/v1/calculations", content=submission("after"),
                                   headers={"content-type": "application/json"})
        assert response.status_code == 202, response.text
    for endpoint in ("submit", "result", "batch"):
        assert delta(after, before, "calcstream_api_refused_total", endpoint=endpoint,
                     status="503", code="overloaded") == 1
    assert delta(after, before, "calcstream_api_requests_rejected_total", via="single",
                 status="503", code="overloaded") == 1
    assert after[("calcstream_api_requests_in_progress", ())] == 2


async def test_past_the_socket_limit_handshakes_are_refused(door: ApiStack) -> None:
    async with httpx.AsyncClient(base_url=door.base_url, timeout=10) as http, \
            connect(door.ws_url), connect(door.ws_url) as second:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(door.ws_url):
                pass
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
        assert orjson.loads(refused.value.response.body)["error"]["code"] == "overloaded"
        assert (await http.get("/healthz")).status_code == 200
        await second.close()
        await until(http, "calcstream_api_websocket_connections", lambda v: v < 2)
        async with connect(door.ws_url) as ws:
            await ws.send('{"type": "subscribe", "ids": ["x"]}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"


# Foreign pages.

@pytest.mark.parametrize("origin", [ALLOWED, "HTTPS://dash.example:8443", None])
async def test_sockets_from_allowed_origins_and_non_browsers_are_let_in(
    door: ApiStack, origin: str | None,
) -> None:
    async with connect(door.ws_url, origin=None if origin is None else Origin(origin)) as ws:
        await ws.send('{"type": "subscribe", "ids": ["x"]}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"


async def test_a_socket_from_a_foreign_origin_is_refused_before_the_handshake(
    door: ApiStack,
) -> None:
    async with httpx.AsyncClient(base_url=door.base_url, timeout=10) as http:
        before = await scrape(http)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(door.ws_url, origin=Origin("http://evil.example")):
                pass
        after = await scrape(http)
    assert refused.value.response.status_code == 403
    assert orjson.loads(refused.value.response.body)["error"]["code"] == "origin_not_allowed"
    assert delta(after, before, "calcstream_api_refused_total", endpoint="ws", status="403",
                 code="origin_not_allowed") == 1


# Floods of oversized uploads.

def peak_rss() -> int:
    """The process' peak resident set since the last ``reset_peak_rss``, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


async def test_a_hundred_oversized_uploads_at_once_keep_memory_flat(api: ApiStack) -> None:
    uploads, size = 100, 8 * 1024 * 1024
    piece = b"1," * 32 * 1024

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    reset_peak_rss()
    before = peak_rss()
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30,
                                 limits=httpx.Limits(max_connections=uploads)) as http:
        responses = await asyncio.gather(*(
            http.post("/v1/calculations", content=body(),
                      headers={"content-type": "application/json"})
            for _ in range(uploads)))
    assert [r.status_code for r in responses] == [413] * uploads
    growth = peak_rss() - before
    # The API runs in this process: its growth, the clients' included, stays far below the
    # 800 MiB offered.
    assert growth < 100 * 1024 * 1024, f"peak RSS grew {growth >> 20} MiB"


async def test_an_oversized_body_is_answered_before_it_is_sent_in_full(api: ApiStack) -> None:
    async with Raw.open(api) as raw:
        await raw.head("/v1/calculations", {"Content-Type": "application/json",
                                            "Transfer-Encoding": "chunked"})
        for _ in range(3):  # 96 KiB of a 64 KiB limit, and the body is never finished
            await raw.chunk(b" " * 32 * 1024)
        response = await raw.response()
    assert response.status == 413
    assert response.json()["error"]["code"] == "payload_too_large"
