"""Settings every process shares, read from ``CALCSTREAM_*`` variables once, at the entry point:
where the broker is, which topics, how producers behave, how processes log and collect garbage.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import DEAD_LETTERS, REQUESTS, RESULTS, Topics


class BrokerSettings(BaseSettings):
    """How to reach the broker and which topics to use; shared by the worker and the API."""

    model_config = SettingsConfigDict(env_prefix="CALCSTREAM_", frozen=True, extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    requests_topic: str = REQUESTS
    results_topic: str = RESULTS
    dlq_topic: str = DEAD_LETTERS
    create_topics: bool = Field(
        default=True, description="Create missing topics at start-up."
    )
    topic_partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    enable_idempotence: bool = Field(
        default=True,
        description="Idempotent producers: a retried produce is never written twice, and a "
        "partition's records stay in the order they were sent.",
    )
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    producer_batch_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Producer batch size per partition. aiokafka's "
        "16 KB default gives a 19 KB request a produce round trip of its own "
        "(bench/FINDINGS.md, finding 1)."
    )
    security_protocol: str = "PLAINTEXT"
    gc_gen0_threshold: int = Field(
        default=20_000, ge=0, description="Allocations between collections of the garbage "
        "collector's youngest generation (Python's default is 700; 0 keeps Python's "
        "thresholds). Objects created at start-up are frozen first (core/runtime.py)."
    )
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def topics(self) -> Topics:
        """The deployment's topic names."""
        return Topics(self.requests_topic, self.results_topic, self.dlq_topic)

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``: acks=all, never acks=0."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "acks": "all",
            "enable_idempotence": self.enable_idempotence,
            "max_request_size": self.max_message_bytes,
            "max_batch_size": min(self.producer_batch_bytes, self.max_message_bytes),
            "linger_ms": 1,
            "request_timeout_ms": 10_000,
        }
