"""Accepting requests: idempotent client ids, publish-then-answer, and waiting for results.

A request is remembered (``ResultStore.reserve``) before it is published and forgotten again if
the broker does not acknowledge it, so a concurrent re-post of the same id never publishes
twice and never gets a 2xx before the ack. A ``?wait=`` future is registered before publishing,
so a result that comes back faster than the ack is not missed.

Ids are the caller's tenant's (``store.scoped``): the same id in two tenants is two requests.
Client ids are compared by fingerprint (op, data, args, deadline). An id this replica only
knows from the reply topic (accepted by another replica, or before a restart) has no
fingerprint here; it is compared by op alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from producer_api.errors import ApiError, Conflict, Unavailable
from producer_api.intake import WANTS_BINARY_RESULT, Prepared
from producer_api.publisher import Publisher
from producer_api.reader import ReaderStopped
from producer_api.routing import ReplyRoutes
from producer_api.stats import Intake
from producer_api.store import PUBLISHING, Entry, ResultStore, scoped
from schemas import ops

BatchItem = tuple[int, Prepared | ApiError]
SLICE_S = 0.002
"""Longest stretch a batch prepares and sends items before it lets the loop run others."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one submit."""

    id: str
    result: bytes | None
    existing: bool


@dataclass
class Summary:
    """Counts, ids and the first errors of a batch (the ``BatchSummary`` document).

    Every item is also counted in ``intake`` (the API's metrics) as it is decided.
    """

    keep_ids: bool
    max_errors: int
    intake: Intake = field(default_factory=Intake)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    ids: list[str | None] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def accept(self, index: int, request_id: str, duplicate: bool = False) -> None:
        """Count an acknowledged (or already known) item."""
        self.accepted += 1
        self.duplicates += duplicate
        if duplicate:
            self.intake.deduplicated += 1
        else:
            self.intake.accepted += 1
        if self.keep_ids:
            self._slot(index)
            self.ids[index] = request_id

    def reject(self, index: int, error: ApiError) -> None:
        """Count a rejected item."""
        self.rejected += 1
        self.intake.reject(error)
        if self.keep_ids:
            self._slot(index)
        if len(self.errors) < self.max_errors:
            fields = getattr(error, "fields", None)
            first = fields[0] if fields else {"field": None, "message": error.message}
            self.errors.append({"index": index, "code": error.code,
                                "message": first["message"], "field": first["field"]})

    def document(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected, "ids": self.ids if self.keep_ids else None,
                "errors": self.errors}

    def _slot(self, index: int) -> None:
        if index >= len(self.ids):
            self.ids.extend([None] * (index + 1 - len(self.ids)))


class Acceptor:
    """Publishes prepared requests once per id and hands back their state."""

    def __init__(self, store: ResultStore, publisher: Publisher, max_errors: int,
                 routes: ReplyRoutes | None = None, binary_results: bool = False,
                 expect: Callable[[str], Awaitable[None]] | None = None,
                 waiting: Callable[[Iterable[str]], None] | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.max_errors = max_errors
        self.routes = routes
        self.expect = expect
        """Told the store key of each new request whose result will be waited for here, before
        it is published (``ResultReader.expect``)."""
        self.waiting = waiting
        """Told the store key of an id published earlier whose result is now waited for here
        (``ResultReader.waiting_for``)."""
        self.binary_results = binary_results
        """Ask the worker for every array result as a binary frame, whatever the client
        wants: the API writes a result's JSON itself when a client wants JSON."""

    async def accept(self, item: Prepared, wait: float = 0.0, tenant: str = "",
                     trace: Sequence[tuple[str, bytes]] = (), watched: bool = False,
                     locate: Callable[[str, str], Awaitable[bytes | None]] | None = None,
                     ) -> Outcome:
        """Publish (unless the tenant's id is known), with the submit's ``trace`` headers,
        then wait up to ``wait`` s for the result; ``watched``: the caller watches for it
        once this returns (a WebSocket submit). ``locate`` (store key, id): asked before
        waiting for an id published earlier that has no result here (``usecase.recall``):
        its result, if found elsewhere."""
        key = scoped(tenant, item.id)
        entry = self.store.get(key)
        if entry is not None:
            self._check_same(entry, item)
            if entry.state == PUBLISHING and not await self._acked_elsewhere(entry):
                raise Unavailable("an earlier submit of this id was not acknowledged; retry")
            result = entry.result
            ends = time.monotonic() + wait
            if result is None and (wait > 0 or watched) and locate is not None:
                try:  # a ?wait= answers within its wait, whoever is asked on the way
                    async with asyncio.timeout(wait or None):
                        result = await locate(key, item.id)
                except TimeoutError:
                    pass
                result = result or entry.result
            if result is None and (left := ends - time.monotonic()) > 0:
                pending = self.store.waiter(key)
                if self.waiting is not None:
                    self.waiting((key,))
                result = await self._wait(key, pending, left)
            return Outcome(item.id, result, True)
        entry = self.store.reserve(key, item.op, item.fingerprint)
        waiter = None
        try:
            if self.expect is not None and (wait > 0 or watched):
                await self.expect(key)
            if wait > 0:
                waiter = self.store.waiter(key)
            await self.publisher.publish(self._stamped(item, tenant, trace))
        except BaseException:
            self.store.release(entry)
            if waiter is not None:
                self.store.drop_waiter(key, waiter)
            raise
        self.store.acked(entry)
        if waiter is None:
            return Outcome(item.id, entry.result, False)
        return Outcome(item.id, await self._wait(key, waiter, wait), False)

    async def accept_many(self, items: AsyncIterable[BatchItem], keep_ids: bool,
                          intake: Intake | None = None, tenant: str = "",
                          trace: Sequence[tuple[str, bytes]] = ()) -> Summary:
        """Publish a stream of items in order, each with the batch's ``trace`` headers;
        ``Unavailable`` carries the partial summary.

        A stream that ends in an error of its own (an NDJSON body cut off, the client gone)
        keeps what it sent: those items are acknowledged and summed up, then the error is
        raised carrying the summary.
        """
        summary = Summary(keep_ids, self.max_errors, intake or Intake())
        sender = self.publisher.batch()
        elsewhere: list[tuple[int, Entry]] = []
        cut: ApiError | None = None
        slice_ends = time.perf_counter() + SLICE_S
        try:
            stream = aiter(items)
            while True:
                if time.perf_counter() > slice_ends:
                    await asyncio.sleep(0)  # preparing items of a large body, in slices
                    slice_ends = time.perf_counter() + SLICE_S
                try:
                    index, item = await anext(stream)
                except StopAsyncIteration:
                    break
                except ApiError as exc:
                    cut = exc
                    break
                if isinstance(item, ApiError):
                    summary.reject(index, item)
                    continue
                key = scoped(tenant, item.id)
                entry = self.store.get(key)
                if entry is not None:
                    try:
                        self._check_same(entry, item)
                    except Conflict as exc:
                        summary.reject(index, exc)
                        continue
                    if entry.state == PUBLISHING:
                        elsewhere.append((index, entry))
                    else:
                        summary.accept(index, item.id, duplicate=True)
                    continue
                entry = self.store.reserve(key, item.op, item.fingerprint)
                try:
                    acked = await sender.send(self._stamped(item, tenant, trace),
                                              (index, entry))
                except BaseException:
                    # Not in sender.pending yet when the send itself failed: release it here,
                    # or a retry of this id would wait on a publish that never happens.
                    if entry not in (tag for _, tag in sender.pending):
                        self.store.release(entry)
                    raise
                self._acked(summary, acked)
            self._acked(summary, await sender.flush())
        except BaseException as exc:
            for _, entry in sender.pending:
                self.store.release(entry)
            if isinstance(exc, Unavailable):
                if cut is not None:
                    exc.message += f" (after the body was cut off: {cut.message})"
                exc.extra["summary"] = summary.document()
            raise
        for index, entry in elsewhere:
            if await self._acked_elsewhere(entry):
                summary.accept(index, entry.id, duplicate=True)
            else:
                summary.reject(index, Unavailable("an earlier submit of this id was not "
                                                  "acknowledged; retry"))
        if cut is not None:
            cut.message += (f"; before it {summary.accepted} accepted and {summary.rejected} "
                            "rejected (see summary)")
            cut.extra["summary"] = summary.document()
            raise cut
        return summary

    def _stamped(self, item: Prepared, tenant: str,
                 trace: Sequence[tuple[str, bytes]]) -> Prepared:
        """The record with its reply-partition, result-type, tenant and trace headers."""
        own = [self.routes.header(item.id)] if self.routes is not None else []
        spec = ops.CATALOGUE.get(item.op)
        if (self.binary_results and spec is not None and spec.array_result
                and WANTS_BINARY_RESULT not in item.headers):
            own.append(WANTS_BINARY_RESULT)
        return item.stamped(tenant, trace, own)

    def _acked(self, summary: Summary, tags: list[tuple[int, Entry]]) -> None:
        for index, entry in tags:
            self.store.acked(entry)
            summary.accept(index, entry.id)

    @staticmethod
    def _check_same(entry: Entry, item: Prepared) -> None:
        if entry.fingerprint is not None and item.fingerprint is not None:
            same = entry.fingerprint == item.fingerprint
        else:
            same = entry.op == item.op
        if not same:
            raise Conflict(f"id {item.id!r} is already used by a different request")

    async def _acked_elsewhere(self, entry: Entry) -> bool:
        """Wait for another submit's pending publish of this id to be acknowledged."""
        fut = self.store.ack_waiter(entry)
        try:
            return await asyncio.wait_for(fut, self.publisher.timeout)
        except TimeoutError:
            return False

    async def _wait(self, key: str, waiter: asyncio.Future[bytes],
                    wait: float) -> bytes | None:
        try:
            async with asyncio.timeout(wait):
                return await waiter
        except (TimeoutError, ReaderStopped):
            return None
        finally:
            self.store.drop_waiter(key, waiter)
