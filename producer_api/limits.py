"""Reading request bodies within their byte limits, as they stream in.

A declared ``Content-Length`` over the limit is refused before a byte is read; otherwise bytes
are counted as they arrive, so a chunked body without a length is cut off at the limit too and
never buffered whole. NDJSON bodies are read line by line and only each line is limited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from producer_api.errors import ClientDisconnected, PayloadTooLarge


def _check_declared(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit}")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; ``PayloadTooLarge`` as soon as it passes ``limit`` bytes."""
    _check_declared(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in _stream(request):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_lines(request: Request, limit: int) -> AsyncIterator[tuple[int, bytes | None]]:
    """``(index, line)`` for each non-blank line; ``line`` is None when it passed ``limit``.

    The rest of an over-long line is skipped without being kept in memory.
    """
    index = 0
    pending = bytearray()
    skipping = False
    async for chunk in _stream(request):
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
    if not skipping and pending.strip():
        yield index, bytes(pending)


async def _stream(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ClientDisconnected("the client disconnected while sending") from None
