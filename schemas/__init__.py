"""Wire contracts shared by the API, the worker and any outside Kafka client."""

from schemas.messages import (
    SCHEMA_VERSION,
    CalcRequest,
    CalcResult,
    DeadLetterHeaders,
    ErrorInfo,
    ResultStatus,
)
from schemas.topics import Topics

__all__ = [
    "SCHEMA_VERSION",
    "CalcRequest",
    "CalcResult",
    "DeadLetterHeaders",
    "ErrorInfo",
    "ResultStatus",
    "Topics",
]
