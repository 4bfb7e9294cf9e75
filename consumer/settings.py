"""The worker's settings, read from ``CALCSTREAM_*`` environment variables once, at the entry
point; the broker and topic settings it shares with the API are ``core.settings``."""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import Field

from consumer.cache import DEFAULT_BYTES
from core.settings import BrokerSettings


class WorkerSettings(BrokerSettings):
    """The worker's settings."""

    group_id: str = "calcstream-workers"
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    max_batch_size: int = Field(default=512, ge=1, le=100_000)
    max_batch_delay_ms: float = Field(
        default=0.0, ge=0, description="How long a batch waits to fill after its first record; "
        "0: a batch is what one fetch returned (up to max_batch_size), which under load is "
        "already many records and when quiet adds no wait (bench FINDINGS 2).",
    )
    blas_threads: int = Field(
        default=1, ge=0, description="Threads the BLAS library behind NumPy may use for one "
        "product or inverse. One: the worker already computes max_in_flight batches at once in "
        "their own threads, and OpenBLAS's own threads spin while they wait for a core, which "
        "doubled the CPU of a 300×300 product beside a busy broker and API. 0 keeps the "
        "library's default (every core), for a worker with cores to itself that computes few, "
        "large products.",
    )
    max_in_flight: int = Field(
        default=4, ge=1, description="Batches computing, publishing or waiting to be committed "
        "at once; fetching pauses while this many are in flight."
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once", description="at_least_once: results are published, then "
        "offsets committed; a crash in between answers those records again (duplicates, "
        "recognisable by id). exactly_once: a batch's results, dead letters and offsets are one "
        "Kafka transaction per request partition; read results with read_committed "
        "(docs/worker.md, 'Processing guarantees').",
    )
    transaction_interval_ms: float = Field(
        default=100.0, ge=0, description="exactly_once: how long a partition's transaction "
        "stays open taking more batches before it commits. Results become visible at commit: "
        "longer means fewer commits per result and more latency.",
    )
    transaction_timeout_ms: int = Field(
        default=60_000, ge=1000, description="exactly_once: the broker aborts a transaction "
        "open this long (a worker that stalled); results of open transactions hold back "
        "read_committed readers of their partitions until then or until the next owner fences "
        "it.",
    )
    transaction_publish_timeout_s: float = Field(
        default=20.0, gt=0, description="exactly_once: the longest a batch's publish inside a "
        "transaction may take; past it the partition's transaction is given up and the "
        "partition starts over from its committed offset with a new producer (the producer "
        "itself retries a broker that is away for as long as it takes).",
    )
    transactional_id_prefix: str = Field(
        default="", description="exactly_once: transactional ids are "
        "'<prefix>.<request topic>.<partition>'; default: the group id.",
    )
    max_attempts: int = Field(
        default=3, ge=0, description="A record that workers died computing this many times "
        "(journaled; the first death of a crash loop is not) is dead-lettered instead of "
        "computed again, counted in the attempts topic across restarts; 0 turns it off."
    )
    attempts_topic: str = Field(
        default="", description="The attempts journal topic; default '<requests_topic>.attempts'."
    )
    drain_timeout_s: float = Field(
        default=30.0, gt=0, description="On shutdown or rebalance, how long in-flight batches "
        "may take to publish and commit before they are abandoned uncommitted."
    )
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    fetch_max_wait_ms: int = Field(
        default=100, ge=1,
        description="How long a fetch waits at the broker when no records are there. Kafka "
        "answers as soon as a record arrives, so this bounds only how often an idle worker asks.",
    )
    fetch_min_bytes: int = Field(
        default=1, ge=1,
        description="How many bytes of requests the broker gathers before it answers a fetch "
        "(or fetch_max_wait_ms passes). Above 1, the worker makes fewer fetch round trips under "
        "load and takes larger batches, and each request may wait up to fetch_max_wait_ms longer.",
    )
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="0 picks a free port.")
    redis_url: str | None = Field(
        default=None, description="Result cache shared by all workers (e.g. "
        "redis://127.0.0.1:6379/0); without it each worker keeps an in-process LRU."
    )
    cache_entries: int = Field(
        default=100_000, ge=0, description="In-process result cache size; 0 turns it off."
    )
    cache_bytes: int = Field(
        default=DEFAULT_BYTES, ge=0, description="Bytes of results the in-process cache holds "
        "at most (256 MiB: 100,000 W1 results, or about 370 of 300×300 products in binary); "
        "0 turns it off.",
    )
    cache_ttl_s: int = Field(default=3600, ge=1, description="Redis cache entry lifetime.")

    @property
    def journal_topic(self) -> str:
        """The attempts journal topic of this deployment."""
        return self.attempts_topic or f"{self.requests_topic}.attempts"

    def consumer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer``: manual commits from the earliest offset."""
        return {
            **self.connection_options(),
            "group_id": self.group_id,
            "client_id": self.worker_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "fetch_min_bytes": self.fetch_min_bytes,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            # A member gives partitions up only after draining its in-flight batches (at most
            # drain_timeout_s); the group waits that long for it to rejoin instead of expelling
            # it after one session timeout (aiokafka's default), which refused its commits.
            "rebalance_timeout_ms": max(self.session_timeout_ms,
                                        int(self.drain_timeout_s * 1000) + 5_000),
            "max_partition_fetch_bytes": self.max_message_bytes,
            "fetch_max_bytes": max(self.max_message_bytes, 52_428_800),
        }
