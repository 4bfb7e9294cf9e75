"""Sending an ingest through the API's batch endpoint (``calcstream ingest --via-api URL``).

NDJSON and CSV requests go as NDJSON bodies of ``chunk`` lines; ``.npy`` files go as ``.npy``
bodies of ``chunk`` rows, so their numbers are never turned into text. At most ``window``
requests are in calls not answered yet. Every request carries an id chosen here, so a call
retried after a 503 publishes nothing twice: a line's own id or ``PREFIX-N`` as when sending to
Kafka, and for ``.npy`` rows ``PREFIX-FIRST-I`` (row FIRST+I of the file), because the API
names the rows of a body ``<id_prefix>-<index>``.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from calcstream.cli.errors import InputError
from calcstream.cli.sources import Outgoing, Rejected
from calcstream.client import NDJSON, NPY, Client
from core.tasks import cancel_and_wait
from schemas.encoding import JSON


def block_ids(prefix: str, first: int, count: int) -> tuple[str, list[str]]:
    """The ``id_prefix`` of a block of ``.npy`` rows starting at row ``first``, and its ids."""
    block_prefix = f"{prefix}-{first}"
    return block_prefix, [f"{block_prefix}-{i}" for i in range(count)]


class ApiSink:
    """Posts requests to ``/v1/calculations/batch`` in chunks, a few calls at a time."""

    def __init__(self, client: Client, *, window: int, chunk: int,
                 on_rejected: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.chunk = chunk
        self.acked = 0
        self.peak_in_flight = 0
        self.rejected: list[Rejected] = []
        """Requests the API refused (the source checked them, so normally none)."""
        self._on_rejected = on_rejected
        self._calls = asyncio.Semaphore(max(1, window // chunk))
        self._in_flight = 0
        self._lines: list[bytes] = []
        self._ids: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def send(self, item: Outgoing) -> None:
        """Add one JSON request to the current NDJSON chunk; post the chunk when full."""
        self._raise_failure()
        if item.content_type != JSON:
            raise InputError("binary requests go through the API as .npy blocks (send_rows)")
        self._lines.append(item.value)
        self._ids.append(item.id)
        if len(self._lines) >= self.chunk:
            await self._post_lines()

    async def send_rows(self, first: int, rows: npt.NDArray[np.float64], ids: list[str], *,
                        op: str, args: dict[str, Any], id_prefix: str) -> None:
        """Post a block of ``.npy`` rows, the first being row ``first`` of the file."""
        self._raise_failure()
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, rows, allow_pickle=False)
        params = {"op": op, "args": orjson.dumps(args).decode(), "id_prefix": id_prefix}
        await self._start(buffer.getvalue(), NPY, params, ids,
                          lambda index: f"row {first + index}")

    async def flush(self) -> None:
        """Post the last chunk and wait for every call; raise the first failure."""
        if self._lines:
            await self._post_lines()
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        self._raise_failure()

    async def close(self) -> None:
        """Cancel the calls still running (after a failure elsewhere); safe to call twice."""
        await cancel_and_wait(*self._tasks)

    async def _post_lines(self) -> None:
        body = b"\n".join(self._lines) + b"\n"
        ids = self._ids
        self._lines, self._ids = [], []
        await self._start(body, NDJSON, {}, ids, lambda index: f"request {ids[index]}")

    async def _start(self, body: bytes, content_type: str, params: dict[str, str],
                     ids: list[str], where: Callable[[int], str]) -> None:
        await self._calls.acquire()
        self._in_flight += len(ids)
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        task = asyncio.create_task(self._call(body, content_type, params, ids, where))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _call(self, body: bytes, content_type: str, params: dict[str, str],
                    ids: list[str], where: Callable[[int], str]) -> None:
        try:
            summary = await self.client.post_batch(body, content_type=content_type,
                                                   params=params)
        finally:
            self._in_flight -= len(ids)
            self._calls.release()
        self.acked += summary["accepted"]
        if summary["rejected"]:
            self._note_rejections(summary, ids, where)

    def _note_rejections(self, summary: dict[str, Any], ids: list[str],
                         where: Callable[[int], str]) -> None:
        errors = {e["index"]: e for e in summary.get("errors") or []}
        for index, request_id in enumerate(summary.get("ids") or []):
            if request_id is not None:
                continue
            error = errors.get(index)
            reason = (f"{error['field']}: {error['message']}" if error and error.get("field")
                      else error["message"] if error else "refused by the API")
            self.rejected.append(Rejected(where(index), reason))
            if self._on_rejected is not None:
                self._on_rejected(ids[index])

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failure = self._failure or exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
