"""The API's settings, read from ``CALCSTREAM_*`` environment variables once, at the entry point.

Every limit below is a default a deployment can change; the Limits table of producer_api/README.md
mirrors this file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from core.settings import BrokerSettings
from schemas.topics import reply_group_of

MiB = 1024 * 1024


class ApiSettings(BrokerSettings):
    """How the API reaches the broker, what it accepts, and how long it remembers results."""

    api_id: str = Field(
        default_factory=lambda: f"api-{socket.gethostname()}-{os.getpid()}",
        description="Kafka client id of this replica.",
    )

    # Input limits.
    max_body_bytes: int = Field(
        default=4 * MiB, ge=1024,
        description="Largest single-request body (POST /v1/calculations) and largest NDJSON "
        "line; 413 beyond it, enforced while reading, chunked bodies included.",
    )
    max_batch_bytes: int = Field(
        default=64 * MiB, ge=1024,
        description="Largest JSON-array or .npy batch body. NDJSON bodies have no total limit, "
        "only the per-line limit.",
    )
    max_array_length: int = Field(
        default=100_000, ge=1, description="Most values in one request's data (422 beyond)."
    )
    max_batch_count: int = Field(
        default=10_000, ge=1, description="Most requests in one JSON-array batch (422 beyond)."
    )
    max_batch_errors: int = Field(
        default=1_000, ge=1,
        description="Per-item errors listed in a batch answer; the rejected count is exact.",
    )
    max_wait_s: float = Field(
        default=30.0, ge=0, description="Longest ?wait= honoured; larger values are clamped."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0,
        description="How long a client may take to send a body: the whole body of a single "
        "submit, a JSON-array or an .npy batch, and each line of an NDJSON stream (which may "
        "run for as long as it keeps completing lines). Only time spent waiting for the "
        "client counts. 408 and the connection closed beyond it, so a client trickling "
        "bytes cannot hold a request open.",
    )

    # Load shedding.
    max_concurrent_requests: int = Field(
        default=1024, ge=1,
        description="HTTP requests in progress at once on /v1/calculations (submits, batches, "
        "state reads, ?wait= polls included: a wait holds its connection and a waiter). "
        "Beyond it a request is answered 503 'overloaded' with Retry-After at once instead "
        "of queueing. Nothing else is shed: health, readiness, metrics, stats, the dashboard, "
        "the docs and the op catalogue always answer. 1,024: a submit is in progress for a "
        "few ms, a ?wait= for its end-to-end latency; by Little's law the benchmark's target "
        "of 4,000 req/s, every one a ?wait= at the worst p50 measured under load (250 ms, "
        "bench/results/REPORT.md), is about 1,000 in progress (16 times the 64 clients the "
        "benchmark drives). A replica with more in progress than that is past what it can "
        "answer in time, and queueing would only add latency.",
    )

    # Publishing.
    publish_binary: bool = Field(
        default=True,
        description="Write requests to the topic as binary frames (raw float64 data after a "
        "JSON header, content type application/vnd.calcstream.request+binary) rather than "
        "JSON: a 1,000-float request is 8 KB instead of 19 KB on the broker, and the worker "
        "decodes it ten times faster. Off writes the JSON document.",
    )
    binary_results: bool = Field(
        default=True,
        description="Ask the worker for the results of array ops (matmul, inv) as binary "
        "frames (application/vnd.calcstream.result+binary) whatever the client wants: a "
        "300×300 result is then 720 KB of float64 on the worker, the broker and this API "
        "instead of 1.7 MB of JSON written by the worker and parsed here, and the API writes "
        "the JSON itself for a client that wants JSON. Off: those results are JSON on the "
        "reply topic unless the client asked for binary (Accept), for outside readers of the "
        "reply topic that read JSON only.",
    )
    publish_timeout_s: float = Field(
        default=2.0, gt=0,
        description="How long a request waits for the broker's ack before it is answered 503.",
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with every 503.")
    batch_in_flight: int = Field(
        default=2_000, ge=1,
        description="Records of one batch call sent but not yet acknowledged; reading the "
        "body pauses beyond it.",
    )

    # Results.
    result_store_max: int = Field(
        default=100_000, ge=1, description="Ids (queued or answered) remembered per replica."
    )
    result_store_max_bytes: int = Field(
        default=256 * MiB, ge=MiB, description="Bytes of result documents remembered."
    )
    malloc_trim_s: float = Field(
        default=2.0, ge=0,
        description="Every this many seconds the API gives the memory malloc holds free back "
        "to the system (glibc's malloc_trim, core/runtime.py); 0: never.",
    )
    result_ttl_s: float = Field(
        default=900.0, gt=0,
        description="An id is forgotten this long after its last change (accepted, answered).",
    )
    recover_window_s: float | None = Field(
        default=None, ge=0,
        description="At start-up, re-read results this far back (default: result_ttl_s).",
    )
    fetch_max_wait_ms: int = Field(
        default=100, ge=1,
        description="How long the result reader's fetch waits at the broker when no result is "
        "there; Kafka answers as soon as one arrives.",
    )
    fetch_min_bytes: int = Field(
        default=1, ge=1,
        description="How many bytes of results the broker gathers before it answers the result "
        "reader's fetch (or fetch_max_wait_ms passes). Above 1, a replica makes fewer fetch "
        "round trips under load, and each result may wait up to fetch_max_wait_ms longer.",
    )
    startup_timeout_s: float = Field(
        default=30.0, gt=0, description="How long start-up waits for the broker."
    )

    # Reply routing (producer_api.reader).
    reply_routing: bool = Field(
        default=True,
        description="The API replicas share the result topic's partitions (a consumer group, "
        "reply_group), each reading its share and reading others' partitions only while "
        "asked about their ids. Off: every replica reads every partition.",
    )
    reply_group: str | None = Field(
        default=None,
        description="Consumer group of the API replicas on the result topic (default: "
        "calcstream-api.<results topic>). Nothing is committed: it only shares partitions.",
    )
    reply_borrow_s: float = Field(
        default=60.0, gt=0,
        description="How long a replica keeps reading a partition it does not own after the "
        "last GET of an id there (WebSocket watches and ?wait= keep it as long as they last).",
    )
    reply_lookup_s: float = Field(
        default=10.0, gt=0,
        description="Longest a GET waits while this replica reads the id's partition up to "
        "now; 503 with Retry-After past it.",
    )
    advertised_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#\s]+$",
        description="This replica's base URL as the other replicas reach it (e.g. "
        "http://10.0.0.5:8000; {hostname} stands for this host's name). Set on every "
        "replica, a GET of an id whose reply partition another replica owns is asked of that "
        "replica instead of reading the partition here (producer_api/forwarding.py). Unset: "
        "no forwarding.",
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1000,
        description="Reply group: a replica that stops heartbeating this long (killed) "
        "loses its partitions to the others.",
    )
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)

    @field_validator("advertised_url")
    @classmethod
    def _this_host(cls, url: str | None) -> str | None:
        """``{hostname}`` in the advertised URL: this host's name (a container's, say)."""
        return url.replace("{hostname}", socket.gethostname()) if url else url

    # WebSocket.
    ws_max_message_bytes: int = Field(
        default=4 * MiB, ge=1024,
        description="Largest client message; a bigger one closes the socket with 1009.",
    )
    ws_compression: bool = Field(
        default=False,
        description="Offer permessage-deflate to WebSocket clients that ask for it (browsers "
        "do). Off: compressing runs on the event loop; a socket taking 300x300 results cost the "
        "API 81.6 ms of CPU per result with it, 17.1 without (bench/FINDINGS.md 29).",
    )
    ws_queue_size: int = Field(
        default=10_000, ge=1,
        description="Results of the 'all' stream queued for one socket before the oldest are "
        "dropped (references to stored documents, not copies).",
    )
    ws_max_subscriptions: int = Field(
        default=100_000, ge=1, description="Ids one socket may watch at once."
    )
    ws_submits_in_flight: int = Field(
        default=64, ge=1, description="Submits of one socket awaiting their ack at once."
    )
    ws_max_connections: int = Field(
        default=1024, ge=1,
        description="WebSocket connections open at once; a handshake beyond it is refused "
        "with 503 'overloaded' and Retry-After. Each socket holds a task, a queue of up to "
        "ws_queue_size result references and a read buffer of up to ws_max_message_bytes.",
    )
    ws_allowed_origins: str = Field(
        default="",
        description="Comma-separated Origins (e.g. https://dash.example.com) whose browser "
        "pages may open a WebSocket; a handshake from any other Origin is refused with 403. "
        "Clients that send no Origin (not browsers) are always let in. Empty: any Origin.",
    )

    # Who may use the API.
    api_keys_file: Path | None = Field(
        default=None,
        description="The API keys file (`calcstream keys create` writes it). With it every "
        "endpoint but health, readiness, the docs, the op catalogue, the contracts and the "
        "dashboard's page needs `Authorization: Bearer <key>`, and each key sees only its "
        "tenant's calculations. Unset: no keys, and the API refuses to serve on any address "
        "but loopback unless api_open is set.",
    )
    api_open: bool = Field(
        default=False,
        description="Serve without API keys on a non-loopback address: anyone who can reach "
        "the API may submit work and read every result. Say so on purpose, or set "
        "api_keys_file.",
    )
    keys_refresh_s: float = Field(
        default=2.0, gt=0,
        description="How often the API looks whether the keys file changed; a key created "
        "or revoked takes effect within this long.",
    )
    ws_auth_timeout_s: float = Field(
        default=10.0, gt=0,
        description="With API keys, how long a WebSocket may stay open before its first "
        "message authenticates it (`{\"type\": \"auth\", \"key\": ...}`); it is closed "
        "with 1008 after that.",
    )

    # Quotas, per tenant (producer_api.quotas); off when None.
    tenant_max_in_progress: int | None = Field(
        default=None, ge=1,
        description="HTTP requests of one tenant in progress at once on /v1/calculations "
        "(?wait= polls included); beyond it 429 'quota_exceeded' with Retry-After.",
    )
    tenant_rate_per_s: float | None = Field(
        default=None, gt=0,
        description="Requests a second one tenant may make (submits, batches, WebSocket "
        "submits; a token bucket); beyond it 429 'rate_limited' with Retry-After.",
    )
    tenant_burst: int | None = Field(
        default=None, ge=1,
        description="Requests a tenant may make at once above its rate (default: one "
        "second's worth).",
    )
    tenant_max_batch_items: int | None = Field(
        default=None, ge=1,
        description="Most items one batch of a tenant may carry: a JSON array or .npy body "
        "beyond it is a 422; an NDJSON stream is cut there, and its answer says so.",
    )

    # Server.
    access_log: bool = False
    keep_alive_s: int = Field(
        default=75, ge=1,
        description="Seconds an idle HTTP connection stays open for its next request. Longer "
        "than httpx (5 s) and aiohttp (15 s) keep one and than the 60 s default idle timeout of "
        "nginx's upstream keep-alive and AWS's load balancers, so that the client closes "
        "first: a server closing an idle connection as a client reuses it fails that request "
        "with a connection error, and a POST is not retried. Behind a balancer that keeps "
        "idle connections "
        "longer (Google Cloud's: 600 s), set it above that one.",
    )
    fast_path: bool = Field(
        default=True,
        description="Serve POST /v1/calculations and GET /v1/calculations/{id} straight from "
        "ASGI (producer_api.fastpath); off routes them through FastAPI like every other "
        "endpoint.",
    )
    worker_metrics_urls: str = Field(
        default="",
        description="Comma-separated /metrics URLs of workers (plain http) that GET /v1/stats "
        "scrapes, at most once a second, for the dashboard's worker figures.",
    )

    @property
    def worker_metrics(self) -> list[str]:
        """The worker /metrics URLs, as a list."""
        return [url.strip() for url in self.worker_metrics_urls.split(",") if url.strip()]

    @property
    def ws_origins(self) -> frozenset[str]:
        """The allowed WebSocket Origins, normalised (empty: any)."""
        return frozenset(normal_origin(o) for o in self.ws_allowed_origins.split(",")
                         if o.strip())

    @property
    def recover_s(self) -> float:
        """How far back the result reader starts."""
        return self.result_ttl_s if self.recover_window_s is None else self.recover_window_s

    def producer_options(self) -> dict[str, Any]:
        """``AIOKafkaProducer`` options: the shared ones, named after this replica.

        The producer gives a record up (a quarter) before the API stops waiting for it
        (``publish_timeout_s``): a record still queued for a broker that is away is then failed
        rather than delivered after its client was answered 503, and shutting down with the
        broker gone does not wait out a longer request timeout.
        """
        return {**super().producer_options(), "client_id": self.api_id,
                "request_timeout_ms": max(500, int(self.publish_timeout_s * 750))}

    @property
    def reply_group_id(self) -> str:
        """The reply group's id."""
        return self.reply_group or reply_group_of(self.results_topic)

    def reader_options(self, group: bool = False) -> dict[str, Any]:
        """``AIOKafkaConsumer`` options for the result reader: committed results only, no
        commits; with ``group``, a member of the reply group."""
        options: dict[str, Any] = {}
        if group:
            options = {"group_id": self.reply_group_id,
                       "session_timeout_ms": self.session_timeout_ms,
                       "heartbeat_interval_ms": self.heartbeat_interval_ms,
                       "rebalance_timeout_ms": max(self.session_timeout_ms, 10_000)}
        return {
            **self.connection_options(),
            "client_id": self.api_id,
            "group_id": None,
            **options,
            "enable_auto_commit": False,
            "isolation_level": "read_committed",
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "fetch_min_bytes": self.fetch_min_bytes,
            "max_partition_fetch_bytes": self.max_message_bytes,
            "fetch_max_bytes": max(self.max_message_bytes, 52_428_800),
        }


def normal_origin(origin: str) -> str:
    """An Origin as compared: trimmed, lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()
