"""Request, result and dead-letter contracts.

Every record on the request topic is a ``CalcRequest`` (JSON by default, see ``schemas.encoding``
for the binary form), keyed by its id. Every record on the result topic is a ``CalcResult`` keyed
by the same id. A dead-letter record keeps the original key and value bytes untouched and
describes what went wrong in headers (``DeadLetterHeaders``).

Times are UNIX epoch seconds (float) everywhere, so any client can compare them without a
date library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1
DLQ_HEADER_PREFIX = "dlq."

ID_CHARACTERS = "A-Za-z0-9._:@-"
ID_MAX_LENGTH = 128
ID_PATTERN = re.compile(rf"^[{ID_CHARACTERS}]{{1,{ID_MAX_LENGTH}}}$")
"""What a request id may be: 1-128 characters of letters, digits and ``._:@-``."""

RequestId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=rf"^[{ID_CHARACTERS}]+$"),
    Field(description="Client-chosen or server-assigned id; also the record key (UTF-8)."),
]


def is_request_id(value: str) -> bool:
    """``value`` is a valid request id."""
    return ID_PATTERN.match(value) is not None


TENANT_HEADER = "tenant"
"""The record header naming whose request (and result) a record is: UTF-8, a ``TENANT_PATTERN``
name. The API stamps it on the requests of an authenticated key's tenant; the worker copies it
onto the result (and the dead letter keeps the request's headers). A record without it belongs
to no tenant, as records of producers that write to the topic themselves do."""
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""What a tenant name may be: 1-64 characters of letters, digits and ``._-``."""


def is_tenant(value: str) -> bool:
    """``value`` is a valid tenant name."""
    return TENANT_PATTERN.match(value) is not None


def tenant_of(headers: Iterable[tuple[str, bytes]]) -> str:
    """The tenant a record's headers name, or "" for none."""
    for key, value in headers:
        if key == TENANT_HEADER:
            return value.decode("utf-8", "replace")
    return ""


TRACEPARENT_HEADER = "traceparent"
"""The record header carrying a request's W3C trace context (``00-<trace id>-<span id>-<flags>``,
https://www.w3.org/TR/trace-context/). The API sets it from the submit (the client's own, or
the API's span when tracing is on); producers that write to the topic themselves may set their
own. The worker links its batch span to it and copies it onto the result."""
TRACESTATE_HEADER = "tracestate"
"""Vendor trace state that goes with ``traceparent`` (at most 512 characters); copied with it."""
TRACEPARENT_PATTERN = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[ -~]*)?$")
"""The form of a ``traceparent`` value (``is_traceparent`` also refuses version ``ff`` and
all-zero ids)."""
TRACESTATE_MAX_LENGTH = 512
_ZERO_TRACE_ID, _ZERO_SPAN_ID = "0" * 32, "0" * 16
RESULT_HEADERS = (TENANT_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER)
"""The request headers a result record carries back, as they were."""


def is_traceparent(value: str) -> bool:
    """``value`` is a valid W3C ``traceparent``."""
    return (TRACEPARENT_PATTERN.match(value) is not None and not value.startswith("ff")
            and value[3:35] != _ZERO_TRACE_ID and value[36:52] != _ZERO_SPAN_ID)


def result_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]] | None:
    """The headers of a request record its result carries back (``RESULT_HEADERS``), or None."""
    carried = [(key, value) for key, value in headers if key in RESULT_HEADERS]
    return carried or None
REPLY_PARTITION_HEADER = "reply-partition"
"""The record header naming the partition of the result topic a request's result goes to:
UTF-8 decimal digits. The API stamps it on every request so the replica that will be asked
about the id reads that partition (``producer_api.reader``); an outside producer reading its
own replies may set it too. A request without it, or naming a partition the topic does not
have, gets its result keyed by id as before (``schemas.topics.partition_of``)."""
REPLY_PARTITION_PATTERN = re.compile(r"^[0-9]{1,9}$")


def reply_partition_of(headers: Iterable[tuple[str, bytes]]) -> int | None:
    """The result partition a request's headers ask for, or None (none, or not a number)."""
    for key, value in headers:
        if key == REPLY_PARTITION_HEADER:
            text = value.decode("ascii", "replace")
            return int(text) if REPLY_PARTITION_PATTERN.match(text) else None
    return None


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ResultStatus = Literal["ok", "error", "expired"]
RESULT_STATUSES: tuple[str, ...] = get_args(ResultStatus)
"""Every status a result may have (a tuple: ``in`` compares, never hashes a bad value)."""


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RequestFields(_Wire):
    """Everything a request carries except its array."""

    schema_version: Literal[1] = 1
    id: RequestId
    op: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Name of a registered op (GET /v1/ops lists them)."
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Op-specific arguments, validated by the op."
    )
    deadline: FiniteFloat | None = Field(
        default=None,
        description="Absolute UNIX time in seconds. A request still queued after it is "
        "answered with status 'expired' and not computed.",
    )
    submitted_at: FiniteFloat | None = Field(
        default=None, description="UNIX time in seconds at which the client submitted it."
    )


class CalcRequest(RequestFields):
    """One calculation: apply ``op`` to ``data`` (and ``args``)."""

    data: list[FiniteFloat] = Field(
        min_length=1,
        description="The operand(s), flat and row-major. Ops that take two operands "
        "(dot, matmul) expect them concatenated; see each op's description.",
    )


class ErrorInfo(_Wire):
    """Why a request produced no value."""

    code: str = Field(description="Stable machine-readable reason, e.g. 'singular_matrix'.")
    message: str


class CalcResult(_Wire):
    """The outcome of one request. Non-finite numbers appear as "NaN", "Infinity", "-Infinity"."""

    schema_version: Literal[1] = 1
    id: RequestId
    status: ResultStatus
    op: str
    result: float | str | list[Any] | None = Field(
        default=None,
        description="A number for reductions, a (nested) list for array results, null "
        "unless status is 'ok'.",
    )
    error: ErrorInfo | None = None
    worker: str = Field(description="Id of the worker process that answered.")
    batch_size: int = Field(ge=1, description="Requests in the batch this one was computed in.")
    submitted_at: float | None = None
    enqueued_at: float = Field(description="Broker timestamp of the request record.")
    completed_at: float
    queue_ms: float = Field(description="From enqueued_at to the start of compute.")
    compute_ms: float = Field(description="Wall time of the batch's compute step.")
    cached: bool = Field(default=False, description="Answered from the result cache.")


class RecordHeaders(_Wire):
    """The headers calcstream reads on request and result records, each UTF-8 text."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    content_type: Literal["application/json",
                          "application/vnd.calcstream.request+binary",
                          "application/vnd.calcstream.result+binary"] | None = Field(
        default=None, alias="content-type",
        description="The value's encoding; absent means JSON. Binary request frames on "
        "requests, binary result frames on results.")
    result_type: Literal["application/json",
                         "application/vnd.calcstream.result+binary"] | None = Field(
        default=None, alias="result-type",
        description="Requests only: the encoding the producer wants the result in; absent "
        "means JSON. A binary result is written only for an ok result with values.")
    tenant: Annotated[str, StringConstraints(pattern=TENANT_PATTERN.pattern)] | None = Field(
        default=None, alias=TENANT_HEADER,
        description="Whose request this is; the worker copies it onto the result. Absent: no "
        "tenant (records of producers that write to the topic themselves).")
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_PATTERN.pattern)] | None = (
        Field(default=None, alias=TRACEPARENT_HEADER,
              description="The request's W3C trace context: the API sets it from the submit "
              "(the client's traceparent, or the API's own span when tracing is on); other "
              "producers may set their own. The worker links its batch span to it and copies "
              "it onto the result. Absent: the request is not traced."))
    tracestate: Annotated[str, StringConstraints(max_length=TRACESTATE_MAX_LENGTH)] | None = (
        Field(default=None, alias=TRACESTATE_HEADER,
              description="W3C trace state that goes with traceparent; copied with it."))
    reply_partition: Annotated[
        str, StringConstraints(pattern=REPLY_PARTITION_PATTERN.pattern)] | None = Field(
        default=None, alias=REPLY_PARTITION_HEADER,
        description="Requests only: the partition of the result topic (decimal) the result is "
        "written to. The API sets it; absent, or a partition the topic does not have: the "
        "result is keyed by id (CRC-32 of the key modulo the partition count).")


class DeadLetterHeaders(_Wire):
    """The headers of a dead-letter record (key and value are the original bytes)."""

    original_topic: str
    original_partition: int
    original_offset: int
    original_timestamp: int = Field(description="Broker timestamp of the original, in ms.")
    consumer_group: str
    error_class: str
    error_message: str
    stage: Literal["decode", "validate", "compute"]
    request_id: str | None = None
    worker: str
    original_value_bytes: int | None = Field(
        default=None,
        description="Present only when the original value was too big to dead-letter whole "
        "(with these headers it would pass the topic's record limit): the value is then its "
        "first bytes and this is the original length.",
    )

    def to_headers(self) -> list[tuple[str, bytes]]:
        """Kafka record headers: ``dlq.<field>`` = UTF-8 text."""
        return [
            (DLQ_HEADER_PREFIX + name, str(value).encode())
            for name, value in self.model_dump().items()
            if value is not None
        ]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> DeadLetterHeaders:
        """Read the ``dlq.*`` headers of a dead-letter record."""
        n = len(DLQ_HEADER_PREFIX)
        return cls.model_validate(
            {k[n:]: v.decode() for k, v in headers if k.startswith(DLQ_HEADER_PREFIX)}
        )
