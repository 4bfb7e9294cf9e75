"""An async Python client for the calcstream API: like Celery's ``delay()``, but awaitable.

Three lines, with ``calcstream dev`` (or ``make run``) going::

    async with Client("http://127.0.0.1:8000") as client:
        result = await client.compute("sum_of_squares", [1, 2, 3])
        print(result.result)  # 14.0

``submit`` answers with the request's id once the broker has acknowledged it; ``result``,
``stream`` and ``compute`` wait for results over one websocket per client (a result that is
already there arrives at once, nothing polls); ``compute_array`` answers a result's values as
a NumPy array, asked for and relayed in binary (``.npy``) on the submit itself; ``map``
sends many arrays through the batch endpoint (one ``.npy`` body per chunk when they all have
the same length) and returns their results in input order.

Every request carries an id chosen here, so the client retries 503 and 429 answers (waiting
``Retry-After``) and connection failures a bounded number of times without ever publishing a
request twice. What it raises is drawn in ``calcstream.client.errors``: ``InvalidRequest``
(422, 413), ``Conflict`` (409), ``NotFound`` (404), ``NotAllowed`` (401, 403: pass
``api_key=`` to an API with keys), ``Unavailable`` (retries exhausted, or the
API cannot be reached), ``TimedOut`` and ``CalculationError`` (the result is an error).
"""

from calcstream.client.bodies import JSON, NDJSON, NPY, Limits
from calcstream.client.client import Client
from calcstream.client.errors import (
    CalculationError,
    ClientError,
    Conflict,
    InvalidRequest,
    NotAllowed,
    NotFound,
    TimedOut,
    Unavailable,
)

__all__ = ["JSON", "NDJSON", "NPY", "CalculationError", "Client", "ClientError", "Conflict",
           "InvalidRequest", "Limits", "NotAllowed", "NotFound", "TimedOut", "Unavailable"]
