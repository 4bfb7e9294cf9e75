"""Helpers for tests that talk to the real broker: fresh topics, producing, reading everything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from consumer.settings import WorkerSettings
from core.metadata import topic_partitions
from core.settings import BrokerSettings
from schemas.topics import Topics

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int,
                        replication: int = 1) -> None:
    """Create topics with an explicit partition count (and replication factor)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, replication) for n in names])
    finally:
        await admin.close()


@dataclass(frozen=True)
class Replicas:
    """Where one partition lives, as the cluster's metadata says: its leader (-1 while none
    is elected), its replicas and those in sync."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def describe_partitions(bootstrap: str, topic: str) -> dict[int, Replicas]:
    """Per partition of ``topic``, its leader, replicas and in-sync replicas; empty while the
    topic is unknown."""
    (described,) = await _ask_admin(bootstrap, lambda admin: admin.describe_topics([topic]))
    return {p["partition"]: Replicas(p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
            for p in described["partitions"]}


async def describe_all(bootstrap: str) -> dict[str, dict[int, Replicas]]:
    """``describe_partitions`` of every topic, internal ones included."""
    described = await _ask_admin(bootstrap, lambda admin: admin.describe_topics())
    return {t["topic"]: {p["partition"]: Replicas(p["leader"], tuple(p["replicas"]),
                                                  tuple(p["isr"])) for p in t["partitions"]}
            for t in described}


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's effective configuration (its own settings and the brokers' defaults)."""
    (response,) = await _ask_admin(bootstrap, lambda admin: admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)]))
    (resource,) = response.resources
    return {entry[0]: entry[1] for entry in resource[4]}


async def _ask_admin(bootstrap: str, ask: Callable[[AIOKafkaAdminClient], Awaitable[T]],
                     timeout: float = 15.0) -> T:
    """One admin request, asked again while it fails retriably: the admin client sends it to
    a node drawn at random, which may be the one a test has just killed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    return await ask(admin)
                except KafkaError as exc:
                    if not exc.retriable:
                        raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


@dataclass
class Deployment:
    """Fresh topic names and group id on the shared test broker."""

    bootstrap: str
    topics: Topics
    group: str
    partitions: int
    replication: int = 1

    def broker_settings(self, **overrides: Any) -> BrokerSettings:
        return BrokerSettings(**self._base(), **overrides)

    def worker_settings(self, **overrides: Any) -> WorkerSettings:
        opts: dict[str, Any] = {
            "group_id": self.group,
            "session_timeout_ms": 2000,
            "heartbeat_interval_ms": 500,
            "max_batch_delay_ms": 5.0,
            "metrics_port": 0,
        }
        opts.update(overrides)
        return WorkerSettings(**self._base(), **opts)

    def env(self, **extra: str) -> dict[str, str]:
        """CALCSTREAM_* variables for a subprocess of this deployment."""
        env = {
            "CALCSTREAM_BOOTSTRAP_SERVERS": self.bootstrap,
            "CALCSTREAM_REQUESTS_TOPIC": self.topics.requests,
            "CALCSTREAM_RESULTS_TOPIC": self.topics.results,
            "CALCSTREAM_DLQ_TOPIC": self.topics.dlq,
            "CALCSTREAM_GROUP_ID": self.group,
            "CALCSTREAM_TOPIC_PARTITIONS": str(self.partitions),
            "CALCSTREAM_REPLICATION_FACTOR": str(self.replication),
            "CALCSTREAM_SESSION_TIMEOUT_MS": "2000",
            "CALCSTREAM_HEARTBEAT_INTERVAL_MS": "500",
            "CALCSTREAM_METRICS_PORT": "0",
        }
        env.update(extra)
        return env

    def _base(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "requests_topic": self.topics.requests,
            "results_topic": self.topics.results,
            "dlq_topic": self.topics.dlq,
            "topic_partitions": self.partitions,
            "replication_factor": self.replication,
        }


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None]]
    | Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    """Produce records (key, value[, headers]) and wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        futures = []
        for rec in records:
            key, value = rec[0], rec[1]
            headers = rec[2] if len(rec) > 2 else None  # type: ignore[misc]
            futures.append(await producer.send(topic, key=key, value=value, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def request_json(request_id: str, op: str, data: Sequence[float], **extra: Any) -> bytes:
    """A JSON request value."""
    return orjson.dumps({"id": request_id, "op": op, "data": list(data), **extra})


@dataclass
class TopicReader:
    """Reads a topic from the beginning, every partition, without a consumer group.

    Reads until a condition holds, so tests wait on data rather than on time.
    """

    bootstrap: str
    topic: str
    records: list[Any] = field(default_factory=list)
    isolation: str = "read_committed"
    _consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                          enable_auto_commit=False, fetch_max_wait_ms=10,
                                          auto_offset_reset="earliest",
                                          isolation_level=self.isolation,
                                          max_partition_fetch_bytes=8 * 1024 * 1024)
        await self._consumer.start()
        async with asyncio.timeout(10):
            # A topic created a moment ago may not be in the metadata yet; nothing announces it.
            while not (found := await topic_partitions(self._consumer, [self.topic])):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        tps = found[self.topic]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def read_until(self, predicate: Any, timeout: float = 30.0) -> list[Any]:
        """Keep reading until ``predicate(records)`` is true; ``TimeoutError`` otherwise."""
        assert self._consumer is not None
        async with asyncio.timeout(timeout):
            while not predicate(self.records):
                batch = await self._consumer.getmany(timeout_ms=100)
                for recs in batch.values():
                    self.records.extend(recs)
        return self.records

    async def read_count(self, n: int, timeout: float = 30.0) -> list[Any]:
        """Read until at least ``n`` records arrived."""
        return await self.read_until(lambda recs: len(recs) >= n, timeout)

    async def read_more(self, quiet: float = 0.5) -> list[Any]:
        """Read whatever else arrives until nothing has for ``quiet`` seconds."""
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=int(quiet * 1000))
            if not batch:
                return self.records
            for recs in batch.values():
                self.records.extend(recs)


def results_by_id(records: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """Result documents grouped by id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        doc = orjson.loads(r.value)
        out.setdefault(doc["id"], []).append(doc)
    return out
