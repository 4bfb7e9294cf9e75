"""Settings every process shares, read from ``CALCSTREAM_*`` variables once, at the entry point:
where the broker is, which topics, how producers behave, how processes log and collect garbage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import Field, SecretStr
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
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How every client of the process talks to Kafka.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="With SASL_*: how the process authenticates.")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(
        default=None, description="With SSL or SASL_SSL: the CA certificates (PEM) the "
        "broker's certificate must chain to (default: the system's).")
    ssl_certfile: Path | None = Field(
        default=None, description="A client certificate (PEM), for a broker that asks for one.")
    ssl_keyfile: Path | None = Field(default=None, description="Its private key (PEM).")
    ssl_key_password: SecretStr | None = None
    gc_gen0_threshold: int = Field(
        default=20_000, ge=0, description="Allocations between collections of the garbage "
        "collector's youngest generation (Python's default is 700; 0 keeps Python's "
        "thresholds). Objects created at start-up are frozen first (core/runtime.py)."
    )
    log_level: str = "INFO"
    log_json: bool = False
    tracing: Literal["off", "otlp"] = Field(
        default="off", description="OpenTelemetry traces (core/tracing.py): 'otlp' exports "
        "spans over OTLP/HTTP (needs the calcstream[tracing] extra); 'off' creates none. "
        "Either way a request's traceparent travels with it to the worker and back.")
    otlp_endpoint: str | None = Field(
        default=None, description="With tracing=otlp: the collector's OTLP/HTTP traces URL "
        "(default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else http://localhost:4318/v1/traces).")
    tracing_service_name: str | None = Field(
        default=None, description="The service.name of this process's spans (default: "
        "calcstream-api or calcstream-worker).")
    tracing_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of new traces recorded; a request "
        "that arrives with a traceparent follows its sampled flag.")

    def connection_options(self) -> dict[str, Any]:
        """What every Kafka client of the process needs to reach and authenticate to the
        broker (bootstrap servers, security protocol, SASL credentials, TLS context)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                                   "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs "
                                 "CALCSTREAM_SASL_USERNAME and CALCSTREAM_SASL_PASSWORD")
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.get_secret_value())
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=(self.ssl_key_password.get_secret_value()
                          if self.ssl_key_password else None))
        return options

    @property
    def topics(self) -> Topics:
        """The deployment's topic names."""
        return Topics(self.requests_topic, self.results_topic, self.dlq_topic)

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``: acks=all, never acks=0."""
        return {
            **self.connection_options(),
            "acks": "all",
            "enable_idempotence": self.enable_idempotence,
            "max_request_size": self.max_message_bytes,
            "max_batch_size": min(self.producer_batch_bytes, self.max_message_bytes),
            "linger_ms": 1,
            "request_timeout_ms": 10_000,
        }
