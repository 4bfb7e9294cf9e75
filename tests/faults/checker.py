"""What happened to every request, computed from the topics alone (never from a worker's counters).

Like Jepsen's Kafka checker, it compares what clients were told (the ids whose publish was
acknowledged) with what the log holds:

- **lost**: accepted ids with neither a result nor a dead letter, after a quiet period;
- **unseen**: accepted ids that are not even on the request topic (the broker dropped an
  acknowledged write; Kafka must never, even across a SIGKILL and restart of the broker);
- **duplicates**: result records beyond the first for one id;
- **phantoms**: results for ids nobody requested; **invalid**: results that break the contract.

A request record is known by its id when one is readable (JSON ``id`` or the record key) and by
``@partition:offset`` otherwise; a dead letter answers the record its headers point at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from pydantic import ValidationError

from schemas.encoding import peek_id
from schemas.messages import CalcResult, DeadLetterHeaders


class Record(Protocol):
    """A consumed record (aiokafka's ``ConsumerRecord`` fits; so does ``Rec``)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Rec:
    """A record built by hand (unit tests) or copied from any Kafka client."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def request_identity(record: Record) -> str:
    """The id a request record is known by: its readable id, else its position."""
    found = peek_id(record.value, record.key)
    return found if found is not None else f"@{record.partition}:{record.offset}"


@dataclass
class Verdict:
    """The outcome of one run, per request id."""

    accepted: int
    request_records: int
    results: int
    dead_letters: int
    lost: list[str]
    unseen: list[str]
    duplicates: int
    duplicated_ids: int
    duplicated: list[str] = field(repr=False)
    duplicate_dead_letters: int
    phantoms: list[str]
    invalid: list[str]
    latency_ms: dict[str, float] = field(repr=False)
    requested_at: dict[str, int] = field(repr=False)
    answered_at: dict[str, int] = field(repr=False)
    partition_of: dict[str, int] = field(repr=False)

    @property
    def duplicate_ratio(self) -> float:
        """Extra results per accepted request."""
        return self.duplicates / self.accepted if self.accepted else 0.0

    def percentile(self, q: float, since_ms: int | None = None,
                   until_ms: int | None = None) -> float:
        """The q-th percentile (0–100) of request-to-first-outcome latency, in ms.

        With ``since_ms``/``until_ms``, only requests written in that window count.
        """
        values = sorted(
            ms for rid, ms in self.latency_ms.items()
            if (since_ms is None or self.requested_at[rid] >= since_ms)
            and (until_ms is None or self.requested_at[rid] <= until_ms)
        )
        if not values:
            return math.nan
        rank = max(0, math.ceil(q / 100 * len(values)) - 1)
        return values[rank]

    def max_latency_by_partition(self) -> dict[int, float]:
        """Per request partition, the longest a record waited for its outcome (ms)."""
        out: dict[int, float] = {}
        for rid, ms in self.latency_ms.items():
            p = self.partition_of[rid]
            out[p] = max(ms, out.get(p, 0.0))
        return out

    def stall_ms(self, since_ms: int, until_ms: int | None = None) -> float:
        """The longest a partition with pending work went without answering anything.

        A request answered at ``a`` waited since it was written, or since its partition's
        previous answer if that came later (clipped to ``since_ms``); the stall is the longest
        such wait among answers between ``since_ms`` and ``until_ms``. ``inf`` if a request
        written before ``until_ms`` was never answered.
        """
        by_partition: dict[int, list[tuple[int, int]]] = {}
        for rid, answered in self.answered_at.items():
            p = self.partition_of.get(rid)
            if p is not None:
                by_partition.setdefault(p, []).append((answered, self.requested_at[rid]))
        worst = 0.0
        for answers in by_partition.values():
            answers.sort()
            previous: int | None = None
            for answered, requested in answers:
                if answered >= since_ms and (until_ms is None or answered <= until_ms):
                    start = requested if previous is None else max(requested, previous)
                    worst = max(worst, float(answered - max(start, since_ms)))
                previous = answered
        if any(until_ms is None or self.requested_at.get(rid, until_ms + 1) <= until_ms
               for rid in self.lost):
            return math.inf
        return worst

    def summary(self) -> dict[str, float | int]:
        """The headline figures."""
        return {
            "accepted": self.accepted,
            "lost": len(self.lost),
            "unseen": len(self.unseen),
            "duplicates": self.duplicates,
            "duplicate_ratio": round(self.duplicate_ratio, 5),
            "dead_letters": self.dead_letters,
            "phantoms": len(self.phantoms),
            "invalid": len(self.invalid),
            "p50_ms": round(self.percentile(50), 1),
            "p99_ms": round(self.percentile(99), 1),
        }


def check(
    requests: Iterable[Record],
    results: Iterable[Record],
    dead_letters: Iterable[Record],
    acked: Iterable[str] | None = None,
) -> Verdict:
    """Compare the three topics (read from the beginning) with the ids clients were told about.

    ``acked``: the ids whose publish was acknowledged. Without it, every request record on the
    topic counts as accepted.
    """
    requested_at: dict[str, int] = {}
    partition_of: dict[str, int] = {}
    at_position: dict[tuple[int, int], str] = {}
    request_records = 0
    for r in requests:
        request_records += 1
        rid = request_identity(r)
        at_position[(r.partition, r.offset)] = rid
        if rid not in requested_at:
            requested_at[rid] = r.timestamp
            partition_of[rid] = r.partition

    answered_at: dict[str, int] = {}
    result_count: dict[str, int] = {}
    invalid: list[str] = []
    phantoms: list[str] = []
    n_results = 0
    for r in results:
        n_results += 1
        try:
            doc = CalcResult.model_validate(orjson.loads(r.value or b""))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            invalid.append(f"result at {r.partition}:{r.offset}: {exc}"[:300])
            continue
        if r.key != doc.id.encode():
            invalid.append(f"result at {r.partition}:{r.offset}: key {r.key!r} != id {doc.id}")
        result_count[doc.id] = result_count.get(doc.id, 0) + 1
        if doc.id not in requested_at:
            phantoms.append(doc.id)
        answered_at[doc.id] = min(r.timestamp, answered_at.get(doc.id, r.timestamp))

    n_dead = 0
    dead_count: dict[tuple[int, int], int] = {}
    for r in dead_letters:
        n_dead += 1
        try:
            headers = DeadLetterHeaders.from_headers(r.headers)
        except ValidationError as exc:
            invalid.append(f"dead letter at {r.partition}:{r.offset}: {exc}"[:300])
            continue
        position = (headers.original_partition, headers.original_offset)
        dead_count[position] = dead_count.get(position, 0) + 1
        rid = at_position.get(position)
        if rid is None:
            phantoms.append(f"dead letter for {position}")
            continue
        answered_at[rid] = min(r.timestamp, answered_at.get(rid, r.timestamp))

    accepted = set(requested_at) if acked is None else set(acked)
    lost = sorted(rid for rid in accepted if rid not in answered_at)
    latency = {rid: float(answered_at[rid] - requested_at[rid])
               for rid in accepted if rid in answered_at and rid in requested_at}
    return Verdict(
        accepted=len(accepted),
        request_records=request_records,
        results=n_results,
        dead_letters=n_dead,
        lost=lost,
        unseen=sorted(rid for rid in accepted if rid not in requested_at),
        duplicates=sum(n - 1 for n in result_count.values()),
        duplicated_ids=sum(1 for n in result_count.values() if n > 1),
        duplicated=sorted(rid for rid, n in result_count.items() if n > 1),
        duplicate_dead_letters=sum(n - 1 for n in dead_count.values()),
        phantoms=phantoms,
        invalid=invalid,
        latency_ms=latency,
        requested_at=requested_at,
        answered_at=answered_at,
        partition_of=partition_of,
    )
