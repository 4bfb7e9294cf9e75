"""Reading request bodies within their byte and time limits, as they stream in.

A declared ``Content-Length`` over the limit is refused before a byte is read; otherwise bytes
are counted as they arrive, so a chunked body without a length is cut off at the limit too and
never buffered whole. NDJSON bodies are read line by line and only each line is limited.

Time is limited the same way: a bounded body must arrive within ``timeout`` seconds in all, an
NDJSON stream must complete each line within ``timeout`` seconds. Only time spent waiting for
the client counts (an NDJSON stream whose reading pauses while its records are acknowledged is
not charged for the pause). Each wait is one ``asyncio.timeout`` around ``receive``: a timer,
no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from producer_api.errors import BodyTimeout, ClientDisconnected, PayloadTooLarge


class Budget:
    """Seconds the client may still spend sending: the whole body, or the current line."""

    __slots__ = ("left", "line", "seconds")

    def __init__(self, seconds: float, line: int | None = None) -> None:
        self.seconds = seconds
        self.left = seconds
        self.line = line

    def renew(self, line: int) -> None:
        """A line was completed: the next one gets the full time."""
        self.left = self.seconds
        self.line = line

    def exceeded(self) -> BodyTimeout:
        """The error once the time is up."""
        if self.line is None:
            return BodyTimeout(f"the body did not arrive within {self.seconds:g} s")
        return BodyTimeout(f"line {self.line} was not completed within {self.seconds:g} s; "
                           "the stream was cut off there")


def _check_declared(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit}")


async def read_body(request: Request, limit: int, timeout: float) -> bytes | bytearray:
    """The whole body; ``PayloadTooLarge`` as soon as it passes ``limit`` bytes,
    ``BodyTimeout`` if it has not all arrived within ``timeout`` seconds.

    A body of several chunks is copied into one buffer as the chunks arrive, never joined at
    the end: joining a 40 MB body in one go holds the loop for ~25 ms.
    """
    _check_declared(request, limit)
    first: bytes | None = None
    buffer: bytearray | None = None
    budget = Budget(timeout)
    async for chunk in _stream(request, budget):
        if first is None:
            first = chunk
            size = len(chunk)
        else:
            if buffer is None:
                buffer = bytearray(first)
            buffer += chunk
            size = len(buffer)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
    if buffer is not None:
        return buffer
    return first or b""


async def read_lines(request: Request, limit: int, timeout: float
                     ) -> AsyncIterator[tuple[int, bytes | None]]:
    """``(index, line)`` for each non-blank line; ``line`` is None when it passed ``limit``.

    The rest of an over-long line is skipped without being kept in memory. ``BodyTimeout``
    when a line is not completed within ``timeout`` seconds of waiting for it.
    """
    index = 0
    pending = bytearray()
    skipping = False
    budget = Budget(timeout, line=0)
    async for chunk in _stream(request, budget):
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            piece = chunk[start:] if newline < 0 else chunk[start:newline]
            if not skipping:
                if len(pending) + len(piece) > limit:
                    skipping = True
                    pending.clear()
                    yield index, None
                else:
                    pending += piece
            if newline < 0:
                break
            if not skipping and pending.strip():
                yield index, bytes(pending)
            pending.clear()
            skipping = False
            index += 1
            start = newline + 1
            budget.renew(index)
    if not skipping and pending.strip():
        yield index, bytes(pending)


async def _stream(request: Request, budget: Budget) -> AsyncIterator[bytes]:
    """The body's chunks, each waited for within what is left of ``budget``."""
    loop = asyncio.get_running_loop()
    chunks = request.stream()
    while True:
        started = loop.time()
        try:
            async with asyncio.timeout(budget.left):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except ClientDisconnect:
            raise ClientDisconnected("the client disconnected while sending") from None
        except TimeoutError:
            raise budget.exceeded() from None
        budget.left -= loop.time() - started
        yield chunk

