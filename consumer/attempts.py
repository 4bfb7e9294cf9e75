"""Attempt counting that survives worker crashes: a journal of who computes what.

A request that kills the worker process (a native crash, the OOM killer) is never committed,
so every new owner of its partition computes it again and dies again. Counting those attempts
needs state outside the dying process. The count lives in a small topic,
``<requests>.attempts``, keyed by request partition:

- a worker that is assigned a partition reads the tail of its journal and writes ``acquired``;
  when it gives the partition up cleanly (rebalance or SIGTERM, after its last commit) it
  writes ``released``. An ``acquired`` with no ``released`` after it means the previous
  owner died holding the partition;
- after such a death (and only then: a healthy fleet writes nothing per batch), the new owner
  writes an ``attempt`` entry before computing each batch of that partition: the offset
  range and the attempt number (1 + the most any of them was tried before), acknowledged
  before the computation starts; and a ``computed`` entry for the same range once the
  computation returned, in the same produce request as the batch's results (no extra round
  trip);
- an ``attempt`` at or after the committed offset with no ``computed`` after it is a death
  during the computation: a request that kills the worker dies there every time, a worker
  killed for another reason (deploy, OOM elsewhere, SIGKILL) most often dies publishing or
  committing, which does not count. Records with such deaths are computed alone, so the next
  death is attributed to one record; a record already tried ``max_attempts`` times is
  dead-lettered without being computed again. The first death of a crash loop happens
  unjournaled, so a record that kills every worker is dead-lettered after ``max_attempts``
  + 1 deaths.

The journal partition of request partition ``p`` is ``p % journal partitions``; the topic is
created with as many partitions as the request topic. Only the last ``TAIL`` records of a
journal partition are read.

**Why a topic and not commit metadata.** Kafka stores a metadata string with each committed
offset, so ``acquired``/``released`` and the attempts could ride on commits. They do not,
because an ``attempt`` must be durable *before* its computation starts, while a commit may only
move once the records before it are answered: recording an attempt would take a commit that
does not move the offset, and it would be overwritten by the next batch's commit unless every
commit carried every open attempt of its partition, in fetch order across batches in flight.
A commit is also refused once the group has moved on, and the attempt must survive exactly
that. A topic of our own is written when we choose and read only on assignment; aiokafka also
reads committed metadata only through a private API.
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
from consumer.errors import MissingTopic
from core.admin import Broker, connection

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
    """Per request partition: whether to journal attempts, and the unfinished ones."""

    def __init__(self, topic: str, partitions: int, worker: str) -> None:
        self.topic = topic
        self.partitions = partitions
        self.worker = worker
        self._entries: dict[TP, list[Entry]] = {}
        self._loaded: set[TP] = set()
        self._watched: set[TP] = set()

    def loaded(self, tp: TP) -> bool:
        """The journal of this request partition has been read since it was assigned."""
        return tp in self._loaded

    def watched(self, tp: TP) -> bool:
        """Attempts on this partition are journaled (its previous owner died)."""
        return tp in self._watched

    def watch(self, tp: TP) -> None:
        """Journal attempts on this partition from now on."""
        self._loaded.add(tp)
        self._watched.add(tp)

    def journal_partition(self, partition: int) -> int:
        """Where the entries of request partition ``partition`` go."""
        return partition % self.partitions

    def unfinished(self, tp: TP) -> bool:
        """Some attempt on this partition started and never finished."""
        return bool(self._entries.get(tp))

    def prior(self, record: Positioned) -> int:
        """How many times computing this record started and never finished."""
        return max((e.attempt for e in self._entries.get((record.topic, record.partition), ())
                    if e.first <= record.offset <= e.last), default=0)

    def start(self, records: Sequence[Positioned]) -> list[JournalRecord]:
        """Note an attempt at these records; the journal records to write (and have acked)
        before computing them: none unless their partition is watched."""
        by_tp: dict[TP, list[Positioned]] = {}
        for r in records:
            if (r.topic, r.partition) in self._watched:
                by_tp.setdefault((r.topic, r.partition), []).append(r)
        out = []
        for tp, recs in by_tp.items():
            entry = Entry(min(r.offset for r in recs), max(r.offset for r in recs),
                          1 + max(self.prior(r) for r in recs))
            self._entries.setdefault(tp, []).append(entry)
            out.append(self._record(tp, "attempt", first=entry.first, last=entry.last,
                                    attempt=entry.attempt))
        return out

    def computed(self, records: Sequence[Positioned]) -> list[JournalRecord]:
        """The computation of these records returned: their attempts no longer count; the
        journal records to send along with the results."""
        out: list[JournalRecord] = []
        if not self._watched:
            return out  # a healthy fleet: nothing journaled, and no ranges worth a pass
        for tp, (first, last) in _ranges(records).items():
            if tp in self._watched:
                self._entries[tp] = [e for e in self._entries.get(tp, [])
                                     if not (first <= e.first and e.last <= last)]
                out.append(self._record(tp, "computed", first=first, last=last))
        return out

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """Forget attempts of records now committed."""
        for tp, offset in offsets.items():
            if tp in self._entries:
                self._entries[tp] = [e for e in self._entries[tp] if e.last >= offset]

    def released(self, tps: Iterable[TP]) -> list[JournalRecord]:
        """Give partitions up cleanly (after their last commit): the records to write."""
        out = [self._record(tp, "released") for tp in tps if tp in self._loaded]
        self.revoked(tps)
        return out

    def revoked(self, tps: Iterable[TP]) -> None:
        """Forget partitions this worker no longer owns (the next owner reads the journal)."""
        for tp in list(tps):
            self._entries.pop(tp, None)
            self._loaded.discard(tp)
            self._watched.discard(tp)

    async def load(self, reader: AIOKafkaConsumer,
                   committed: Mapping[TP, int]) -> list[JournalRecord]:
        """Read the journal tail of newly assigned partitions (``committed``: their offsets);
        return the ``acquired`` records to write."""
        wanted = {TopicPartition(self.topic, self.journal_partition(p)) for _, p in committed}
        reader.assign(sorted(wanted))
        ends = await reader.end_offsets(list(wanted))
        wanted = {jp for jp in wanted if ends[jp] > 0}
        for jp in wanted:
            reader.seek(jp, max(0, ends[jp] - TAIL))
        found: dict[TP, list[Entry]] = {tp: [] for tp in committed}
        held: dict[TP, bool] = {}
        done: dict[TP, list[tuple[int, int]]] = {}
        while wanted:
            fetched = await reader.getmany(timeout_ms=_READ_MS)
            for records in fetched.values():
                for record in records:
                    doc = orjson.loads(record.value)
                    tp = (doc["topic"], doc["partition"])
                    if tp not in found:
                        continue
                    if doc["kind"] in ("acquired", "released"):
                        held[tp] = doc["kind"] == "acquired"
                    elif doc["last"] < committed[tp]:
                        continue
                    elif doc["kind"] == "computed":
                        done.setdefault(tp, []).append((doc["first"], doc["last"]))
                    else:
                        found[tp].append(Entry(doc["first"], doc["last"], doc["attempt"]))
            wanted = {jp for jp in wanted if await reader.position(jp) < ends[jp]}
        for tp, entries in found.items():
            entries = [e for e in entries
                       if not any(a <= e.first and e.last <= b for a, b in done.get(tp, ()))]
            self._entries[tp] = entries + self._entries.get(tp, [])
            self._loaded.add(tp)
            if entries or held.get(tp, False):
                self.watch(tp)
        died = sorted(f"{t}/{p}" for t, p in found if (t, p) in self._watched)
        if died:
            logger.warning("attempts journal: the previous owner of %s died holding it; "
                           "journaling attempts there until it is handed over cleanly", died)
        return [self._record(tp, "acquired") for tp in committed]

    def _record(self, tp: TP, kind: str, **fields: int) -> JournalRecord:
        topic, partition = tp
        value = orjson.dumps({"kind": kind, "topic": topic, "partition": partition, **fields,
                              "worker": self.worker})
        return JournalRecord(self.topic, self.journal_partition(partition),
                             f"{topic}:{partition}".encode(), value)


def _ranges(records: Iterable[Positioned]) -> dict[TP, tuple[int, int]]:
    out: dict[TP, tuple[int, int]] = {}
    for r in records:
        tp = (r.topic, r.partition)
        first, last = out.get(tp, (r.offset, r.offset))
        out[tp] = (min(first, r.offset), max(last, r.offset))
    return out


async def ensure_journal_topic(broker: Broker, topic: str, partitions: int,
                               replication_factor: int, create: bool = True) -> None:
    """Create the journal topic unless it exists; with ``create`` off, ``MissingTopic`` if it
    does not."""
    admin = AIOKafkaAdminClient(**connection(broker))
    try:
        await admin.start()
        if topic in await admin.list_topics():
            return
        if not create:
            raise MissingTopic(f"the attempts journal topic {topic} does not exist: create it "
                               f"({partitions} partitions), let the worker create topics, or "
                               "set CALCSTREAM_MAX_ATTEMPTS=0")
        response = await admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        for name, code, message in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise KafkaError(f"could not create topic {name}: {code} {message}")
        logger.info("created topic %s (%d partitions)", topic, partitions)
    finally:
        await admin.close()
