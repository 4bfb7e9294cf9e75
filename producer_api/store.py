"""The result store: what this replica knows of each id, bounded, and who waits for what.

Pure bookkeeping, no I/O: ``ResultReader`` (``reader.py``) fills it from the reply topic, the
submit path (``acceptance.py``) reserves ids in it before publishing.

**Tenants.** Everything is keyed by ``scoped(tenant, id)``: the same id in two tenants is two
entries, and a caller looks up only keys of its own tenant, so another tenant's id is simply
not there (404, never 403: no oracle for what exists).

**Retention.** The ``ResultStore`` remembers each id (accepted here, or seen on the reply topic)
until ``result_ttl_s`` after its last change, and at most ``result_store_max`` ids and
``result_store_max_bytes`` of result documents; the oldest are forgotten first, after which
``GET`` answers 404. Idempotency of client ids lasts as long as the id is remembered.

The first result for an id wins; at-least-once duplicates (same id, redelivered) are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import StrEnum

import orjson

from producer_api.archive import SEGMENT_ENTRIES, Archived, ResultArchive

_SCOPE = "\x1f"  # in no request id and no tenant name


def scoped(tenant: str, request_id: str) -> str:
    """The store's key for a tenant's id: ids of different tenants never meet; an id of no
    tenant ("") is its own key."""
    return f"{tenant}{_SCOPE}{request_id}" if tenant else request_id


def key_tenant(key: str) -> str:
    """The tenant of a store key ("" for none)."""
    return key.rpartition(_SCOPE)[0]


class EntryState(StrEnum):
    """Where an id is: being published, acknowledged and queued, or answered."""

    PUBLISHING = "publishing"
    QUEUED = "queued"
    DONE = "done"


PUBLISHING, QUEUED, DONE = EntryState.PUBLISHING, EntryState.QUEUED, EntryState.DONE


class Entry:
    """What this replica knows about one id."""

    __slots__ = ("key", "id", "op", "fingerprint", "state", "accepted_at", "updated_at",
                 "result", "ack_waiters")

    def __init__(self, key: str, op: str, fingerprint: bytes | None, now: float) -> None:
        self.key = key
        self.id = key.rpartition(_SCOPE)[2]  # the client's id: the key itself when unscoped
        self.op = op
        self.fingerprint = fingerprint
        self.state = PUBLISHING
        self.accepted_at = now
        self.updated_at = now
        self.result: bytes | None = None
        self.ack_waiters: list[asyncio.Future[bool]] | None = None

    @classmethod
    def answered(cls, archived: Archived) -> Entry:
        """A read-only view of an answered id kept in the archive."""
        entry = cls(archived.id, archived.op, archived.fingerprint, archived.updated_at)
        entry.state = DONE
        entry.result = archived.result
        return entry

    def state_document(self) -> bytes:
        """The result document once answered, else the queued state."""
        if self.result is not None:
            return self.result
        return orjson.dumps({"id": self.id, "status": "queued", "op": self.op, "result": None,
                             "error": None, "accepted_at": self.accepted_at})


class ResultStore:
    """Bounded id → outcome map (count, bytes, age) plus futures waiting for results.

    Ids not answered yet are ``Entry`` objects, oldest first; answered ids move to a compact
    ``ResultArchive``. Both count towards the limits, and the oldest of either goes first.
    """

    def __init__(self, max_entries: int, max_bytes: int, ttl: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.duplicates = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        # Forgetting a segment at a time forgets at most 1/256 of the cap early.
        self._archive = ResultArchive(min(SEGMENT_ENTRIES, max_entries // 256))
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self._forgot_until = 0.0  # the newest answer time of the results forgotten so far

    def __len__(self) -> int:
        return len(self._entries) + len(self._archive)

    @property
    def result_bytes(self) -> int:
        """Bytes of the result documents remembered."""
        return self._archive.bytes

    @property
    def waiting(self) -> int:
        """Futures waiting for a result (``?wait=`` requests)."""
        return sum(len(futures) for futures in self._waiters.values())

    def keeps_for(self, seconds: float) -> bool:
        """Whether every result put here in the last ``seconds`` is still remembered (none
        forgotten yet for the limits or the TTL)."""
        return seconds <= self.ttl and self.clock() - seconds > self._forgot_until

    def get(self, key: str) -> Entry | None:
        """The entry for a key (``scoped``), unless never known or forgotten."""
        cutoff = self.clock() - self.ttl
        entry = self._entries.get(key)
        if entry is not None:
            if entry.updated_at < cutoff:
                self._forget(entry)
                return None
            return entry
        archived = self._archive.get(key)
        if archived is None or archived.updated_at < cutoff:
            return None
        return Entry.answered(archived)

    def reserve(self, key: str, op: str, fingerprint: bytes | None) -> Entry:
        """Remember an id that is about to be published; ``fingerprint``: 16 bytes, what
        ``intake.fingerprint`` makes of a client id's request."""
        entry = Entry(key, op, fingerprint, self.clock())
        self._entries[key] = entry
        self.sweep()
        return entry

    def acked(self, entry: Entry) -> None:
        """The broker acknowledged the entry's record."""
        if entry.state == PUBLISHING:
            entry.state = QUEUED
        entry.accepted_at = self.clock()
        self._release_ack_waiters(entry, True)

    def release(self, entry: Entry) -> None:
        """Publishing failed: forget the id unless its result somehow arrived."""
        self._release_ack_waiters(entry, False)
        if entry.state == PUBLISHING and self._entries.get(entry.key) is entry:
            self._forget(entry)

    def ack_waiter(self, entry: Entry) -> asyncio.Future[bool]:
        """A future that says whether the entry's pending publish was acknowledged."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if entry.ack_waiters is None:
            entry.ack_waiters = []
        entry.ack_waiters.append(fut)
        return fut

    def put_result(self, key: str, op: str, value: bytes) -> bool:
        """Record a result; wake its waiters. False for a duplicate of a known result."""
        now = self.clock()
        entry = self._entries.pop(key, None)
        if entry is None:
            if key in self._archive:
                self.duplicates += 1
                return False
            fingerprint = None
        else:
            entry.state = DONE
            entry.result = value
            entry.updated_at = now
            fingerprint = entry.fingerprint
        self._archive.add(key, op, value, fingerprint, now)
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(value)
        self.sweep()
        return True

    def waited_keys(self) -> Iterable[str]:
        """Keys someone waits for (``?wait=``)."""
        return self._waiters.keys()

    def waiter(self, key: str) -> asyncio.Future[bytes]:
        """A future resolved with the id's result document when it arrives."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        return fut

    def drop_waiter(self, key: str, fut: asyncio.Future[bytes]) -> None:
        """Stop waiting (timed out, cancelled, or publishing failed)."""
        waiters = self._waiters.get(key)
        if waiters is not None:
            with contextlib.suppress(ValueError):
                waiters.remove(fut)
            if not waiters:
                del self._waiters[key]

    def fail_waiters(self, exc: BaseException) -> None:
        """The reader died: wake everyone waiting for a result with the error."""
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)

    def sweep(self) -> None:
        """Forget the oldest while over a limit, and whatever is past the TTL."""
        cutoff = self.clock() - self.ttl
        entries, archive = self._entries, self._archive
        while True:
            oldest_entry = next(iter(entries.values())) if entries else None
            oldest_segment = archive.oldest()
            if len(self) > self.max_entries or self.result_bytes > self.max_bytes:
                if oldest_entry is not None and (oldest_segment is None or
                                                 oldest_entry.updated_at <= oldest_segment[0]):
                    self._forget(oldest_entry)
                elif oldest_segment is not None:
                    self._drop_oldest(oldest_segment[1])
                else:
                    return
            elif oldest_entry is not None and oldest_entry.updated_at < cutoff:
                self._forget(oldest_entry)
            elif oldest_segment is not None and oldest_segment[1] < cutoff:
                self._drop_oldest(oldest_segment[1])
            else:
                return

    def _drop_oldest(self, newest: float) -> None:
        self._archive.drop_oldest()
        self._forgot_until = max(self._forgot_until, newest)

    def _forget(self, entry: Entry) -> None:
        del self._entries[entry.key]

    @staticmethod
    def _release_ack_waiters(entry: Entry, acked: bool) -> None:
        waiters, entry.ack_waiters = entry.ack_waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(acked)


