"""Attempt counting that survives worker crashes: a journal of what a worker started computing.

A request that kills the worker process (a native crash, the OOM killer) is never committed,
so every new owner of its partition computes it again and dies again. Counting those attempts
needs state outside the dying process, and the embedded broker keeps no offset-commit
metadata, so the count lives in a small topic, ``<requests>.attempts``:

- before computing a batch, the worker writes, per request partition, the offset range it is
  about to compute and the attempt number (1 + the most any of them was tried before), and
  waits for the broker's ack;
- whoever is assigned a partition reads the tail of its journal partition and keeps the
  entries at or after the committed offset: those attempts never finished;
- a batch holding such records is computed one record at a time, alone, so the next crash is
  attributed to exactly one record; a record already tried ``max_attempts`` times is
  dead-lettered without being computed again.

The journal partition of request partition ``p`` is ``p % journal partitions``; the topic is
created with as many partitions as the request topic. Entries are never compacted (each
attempt is its own record); only the last ``TAIL`` entries of a journal partition are read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from consumer.batching import Positioned

logger = logging.getLogger(__name__)

TP = tuple[str, int]
TAIL = 1000
_READ_MS = 10
_TOPIC_EXISTS = 36


@dataclass(frozen=True, slots=True)
class Entry:
    """One attempt: offsets ``first..last`` of a request partition, tried for the n-th time."""

    first: int
    last: int
    attempt: int


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """A journal record to produce (explicit partition)."""

    topic: str
    partition: int
    key: bytes
    value: bytes


class AttemptJournal:
    """Per request partition, the unfinished attempts at or after its committed offset."""

    def __init__(self, topic: str, partitions: int, worker: str) -> None:
        self.topic = topic
        self.partitions = partitions
        self.worker = worker
        self._entries: dict[TP, list[Entry]] = {}
        self._loaded: set[TP] = set()

    def loaded(self, tp: TP) -> bool:
        """The journal of this request partition has been read since it was assigned."""
        return tp in self._loaded

    def journal_partition(self, partition: int) -> int:
        """Where the entries of request partition ``partition`` go."""
        return partition % self.partitions

    def prior(self, record: Positioned) -> int:
        """How many times computing this record started and never finished."""
        return max((e.attempt for e in self._entries.get((record.topic, record.partition), ())
                    if e.first <= record.offset <= e.last), default=0)

    def suspects(self, records: Iterable[Positioned]) -> bool:
        """Some of these records were being computed when a worker died."""
        return any(self.prior(r) for r in records)

    def start(self, records: Sequence[Positioned]) -> list[JournalRecord]:
        """Note an attempt at these records; the journal records to write before computing."""
        by_tp: dict[TP, list[Positioned]] = {}
        for r in records:
            by_tp.setdefault((r.topic, r.partition), []).append(r)
        out = []
        for (topic, partition), recs in by_tp.items():
            entry = Entry(min(r.offset for r in recs), max(r.offset for r in recs),
                          1 + max(self.prior(r) for r in recs))
            self._entries.setdefault((topic, partition), []).append(entry)
            value = orjson.dumps({"topic": topic, "partition": partition, "first": entry.first,
                                  "last": entry.last, "attempt": entry.attempt,
                                  "worker": self.worker})
            out.append(JournalRecord(self.topic, self.journal_partition(partition),
                                     f"{topic}:{partition}".encode(), value))
        return out

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """Forget attempts of records now committed."""
        for tp, offset in offsets.items():
            if tp in self._entries:
                self._entries[tp] = [e for e in self._entries[tp] if e.last >= offset]

    def revoked(self, tps: Iterable[TP]) -> None:
        """Forget partitions this worker no longer owns (the next owner reads the journal)."""
        for tp in tps:
            self._entries.pop(tp, None)
            self._loaded.discard(tp)

    async def load(self, reader: AIOKafkaConsumer, committed: Mapping[TP, int]) -> None:
        """Read the journal tail of newly assigned partitions (``committed``: their offsets)."""
        wanted = {TopicPartition(self.topic, self.journal_partition(p)) for _, p in committed}
        reader.assign(sorted(wanted))
        ends = await reader.end_offsets(list(wanted))
        wanted = {jp for jp in wanted if ends[jp] > 0}
        for jp in wanted:
            # On the embedded broker the end offset can fall short by a batch: reading on to
            # the fetched high watermark below still gets everything after it.
            reader.seek(jp, max(0, ends[jp] - TAIL))
        found: dict[TP, list[Entry]] = {tp: [] for tp in committed}
        while wanted:
            fetched = await reader.getmany(timeout_ms=_READ_MS)
            for records in fetched.values():
                for record in records:
                    doc = orjson.loads(record.value)
                    tp = (doc["topic"], doc["partition"])
                    if tp in found and doc["last"] >= committed[tp]:
                        found[tp].append(Entry(doc["first"], doc["last"], doc["attempt"]))
            if not fetched and await _caught_up(reader, wanted):
                break
        for tp, entries in found.items():
            self._entries[tp] = entries + self._entries.get(tp, [])
            self._loaded.add(tp)
        unfinished = {f"{t}/{p}": len(e) for (t, p), e in found.items() if e}
        if unfinished:
            logger.warning("attempts journal: unfinished attempts found on %s; those records "
                           "are computed one at a time", unfinished)


async def _caught_up(reader: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> bool:
    for jp in partitions:
        highwater = reader.highwater(jp)
        if highwater is None or await reader.position(jp) < highwater:
            return False
    return True


async def ensure_journal_topic(bootstrap_servers: str, topic: str, partitions: int,
                               replication_factor: int) -> None:
    """Create the journal topic unless it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        await admin.start()
        if topic in await admin.list_topics():
            return
        response = await admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        for name, code, message in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise KafkaError(f"could not create topic {name}: {code} {message}")
        logger.info("created topic %s (%d partitions)", topic, partitions)
    finally:
        await admin.close()
