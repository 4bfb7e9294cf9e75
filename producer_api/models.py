"""The API's own documents: what clients post and what the API answers (OpenAPI shows them).

Request records and result documents are the wire contracts of ``schemas.messages``; the models
here add the HTTP side: an optional id on submit, the queued state, batch summaries, errors.
Handlers build answers as dicts and write them with orjson; these models describe them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from schemas.messages import CalcRequest, CalcResult, RequestFields, RequestId

SUM_EXAMPLE: dict[str, JsonValue] = {"op": "sum", "data": [1.0, 2.0, 3.5]}
MATMUL_EXAMPLE: dict[str, JsonValue] = {
    "id": "order-42",
    "op": "matmul",
    "data": [1, 2, 3, 4, 5, 6, 7, 8],
    "args": {"m": 2, "k": 2, "n": 2},
}


class Submission(CalcRequest):
    """A request as a client posts it: a ``CalcRequest`` whose ``id`` is optional.

    Without an id the API assigns one. With one, re-posting the same body is answered with
    the existing state and a different body under the same id is a 409.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [SUM_EXAMPLE, MATMUL_EXAMPLE]})

    id: RequestId | None = None  # type: ignore[assignment]


class SubmissionFields(RequestFields):
    """A ``Submission`` but its ``data``: the rest of a body whose data was read apart
    (``schemas.floatjson``)."""

    id: RequestId | None = None  # type: ignore[assignment]


class Accepted(BaseModel):
    """The broker acknowledged the request; poll its Location or wait for the result."""

    id: RequestId
    status: Literal["queued"] = "queued"


class Queued(BaseModel):
    """An accepted request whose result has not arrived yet."""

    id: RequestId
    status: Literal["queued"] = "queued"
    op: str
    result: None = None
    error: None = None
    accepted_at: float = Field(description="UNIX time at which the broker acknowledged it.")


State = CalcResult | Queued


class ItemError(BaseModel):
    """Why one item of a batch was rejected."""

    index: int = Field(description="0-based position: array item, .npy row or NDJSON line.")
    code: str
    message: str
    field: str | None = None


class BatchSummary(BaseModel):
    """What happened to each item of a batch."""

    accepted: int = Field(description="Items the broker acknowledged, duplicates included.")
    duplicates: int = Field(description="Accepted items whose client id was already known "
                            "with the same body; they were not published again.")
    rejected: int
    ids: list[str | None] | None = Field(
        default=None, description="Id of each item in order (null where rejected); "
        "left out with ?ids=false.")
    errors: list[ItemError] = Field(description="The first max_batch_errors rejections.")
    id_prefix: str | None = Field(
        default=None, description=".npy bodies: the prefix of the ids (<id_prefix>-<row>).")


class FieldError(BaseModel):
    """One offending field."""

    field: str = Field(description="Dotted path, e.g. 'data.3' or 'args.m'.")
    message: str


class ErrorDetail(BaseModel):
    """A stable code, a message for people, and for 422 the fields at fault."""

    code: str
    message: str
    fields: list[FieldError] | None = None


class ErrorBody(BaseModel):
    """Every error answer."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


class OpInfo(BaseModel):
    """One registered op."""

    name: str
    summary: str
    args: dict[str, Any] = Field(description="JSON Schema of the op's args object.")
    cached: bool = Field(description="Whether repeats of a request are answered from the "
                         "workers' result cache (ops that cost more to compute than to look up).")


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether this replica should get traffic, and why not."""

    status: Literal["ready", "not_ready"]
    broker: bool = Field(description="The broker answered a metadata request just now.")
    results_caught_up: bool = Field(description="The result reader has read the reply topic "
                                    "up to its end at least once since start-up.")
    results_remembered: int
    loop_lag_ms: dict[str, float]


class Percentiles(BaseModel):
    """Latency percentiles in milliseconds (null without observations)."""

    p50: float | None
    p95: float | None
    p99: float | None


class StoreSize(BaseModel):
    """What the result store remembers."""

    ids: int
    bytes: int
    waiters: int = Field(description="Requests waiting for a result (?wait=).")


class SocketFigures(BaseModel):
    """WebSocket connections and results dropped for slow readers."""

    connections: int
    dropped: int


class ApiFigures(BaseModel):
    """This API replica's own figures."""

    id: str | None = None
    uptime_s: float
    accepted: int = Field(description="Requests published and acknowledged, every way in.")
    rejected: int
    rejected_by_code: dict[str, int]
    results: dict[str, int] = Field(description="New results read, by status.")
    results_total: int
    results_per_s: float | None = Field(description="Over the window; null on the first call.")
    accepted_per_s: float | None
    end_to_end_ms: Percentiles = Field(
        description="Request enqueued → result read by this API, over the window "
        "(interpolated from the histogram behind calcstream_api_end_to_end_seconds).")
    loop_lag_ms: dict[str, float] | None = Field(
        description="Event-loop lag p50, p99 and max over the last minute; null before start.")
    result_store: StoreSize | None
    websocket: SocketFigures
    caught_up: bool


class WorkerFigures(BaseModel):
    """One worker, from its /metrics endpoint (worker_metrics_urls)."""

    url: str
    up: bool
    error: str | None
    worker: str | None
    records: int
    results: int
    dead_letters: int
    in_flight: int = Field(description="Batches computing or publishing.")
    consumer_lag: int = Field(description="Records behind the high watermarks, all partitions.")
    records_per_s: float | None
    batch_size_mean: float | None
    compute_p99_ms: float | None
    end_to_end_p99_ms: float | None
    loop_lag_p99_ms: float | None


class Stats(BaseModel):
    """Live figures for the dashboard: this API, and the workers it was told about."""

    at: float = Field(description="UNIX time of the figures.")
    window_s: float | None = Field(description="What rates and percentiles are over.")
    api: ApiFigures
    workers: list[WorkerFigures]
    consumer_lag: int | None = Field(description="Sum over the workers that answered.")
