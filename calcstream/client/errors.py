"""What the client (``calcstream.client.Client``) raises: a ``ClientError``.

    ClientError             an answer the client did not expect (e.g. a 500)
    ├── InvalidRequest      422, 413, 415: the API refused the request; ``fields`` says why
    ├── Conflict            409: the id is already used by a different request
    ├── NotFound            404: the API does not know the id
    ├── NotAllowed          401, 403: no API key, a key it does not accept, or a missing scope
    ├── Unavailable         503/429 after bounded retries, or the API cannot be reached
    ├── TimedOut            no result within the timeout (also a ``TimeoutError``)
    └── CalculationError    the result came back with status error or expired; ``result``
                            holds it

``retriable`` says whether the same call may succeed later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.messages import CalcResult


class ClientError(Exception):
    """Base of what ``calcstream.client`` raises; ``status`` is the HTTP status, if any."""

    retriable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.fields = fields or []


class InvalidRequest(ClientError):
    """The API refused the request (422, 413, 415); ``fields`` lists ``{field, message}``."""


class Conflict(ClientError):
    """The id is already used by a different request (409)."""


class NotFound(ClientError):
    """The API does not know this id (404): never accepted, or forgotten."""


class NotAllowed(ClientError):
    """The API refused the key (401: none, unknown or revoked; 403: it lacks the scope)."""


class Unavailable(ClientError):
    """The API answered 503/429 on every retry, or could not be reached at all."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TimedOut(ClientError, TimeoutError):
    """No result arrived within the timeout; the request may still be computed later."""

    retriable = True


class CalculationError(ClientError):
    """The calculation was answered, but not with a value: status ``error`` or ``expired``."""

    def __init__(self, result: CalcResult) -> None:
        code = result.error.code if result.error else result.status
        message = result.error.message if result.error else result.status
        super().__init__(f"{result.op} {result.id}: {result.status}: {code}: {message}",
                         code=code)
        self.result = result
