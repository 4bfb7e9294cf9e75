"""What a stored result becomes on the way out: its JSON document, or its values in binary for
a client that asked for them with ``Accept``.

A result is stored as the worker wrote it: JSON, or a binary frame when its request asked for
a binary result (``schemas.encoding``). Each is turned into the other only when a client asks
for the other, so a binary result answered to the client that asked for it is relayed, never
parsed.

Binary answers are ``application/x-npy`` (a NumPy ``.npy`` file, shape and dtype inside) or
``application/octet-stream`` (the raw little-endian float64 values, row-major); either way the
``Calcstream-Result`` header holds every other field of the result as a JSON object, ``shape``
among them. Only ``ok`` results have values: a client asking for binary gets the JSON document
of a result that has none (an error, an expiry) and of an id still queued.
"""

from __future__ import annotations

import io
import json

import numpy as np
import orjson

from schemas.encoding import is_result_frame, result_array, result_from_json, result_to_json

NPY = "application/x-npy"
OCTETS = "application/octet-stream"
BINARY_TYPES = (NPY, OCTETS)
RESULT_HEADER = "calcstream-result"
JSON_HEADER = (b"content-type", b"application/json")
_JSON_TYPES = ("application/json", "application/*", "*/*")

Headers = list[tuple[bytes, bytes]]


def wanted(accept: str) -> str:
    """The binary media type an ``Accept`` value asks for, or "" for JSON: of
    application/json (or a wildcard, read as JSON), application/x-npy and
    application/octet-stream, the one with the highest q-value, the first listed among equals.
    JSON when it lists none of them."""
    best, best_q = "", 0.0
    for part in accept.split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        if media not in BINARY_TYPES and media not in _JSON_TYPES:
            continue
        q = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = (media if media in BINARY_TYPES else ""), q
    return best


def render(document: bytes, want: str) -> tuple[bytes, Headers]:
    """The body and headers (``content-type`` first) that answer a stored result or state
    ``document`` to a client that wants ``want`` (``wanted``)."""
    frame = is_result_frame(document)
    if not want:
        return (result_to_json(document) if frame else document), [JSON_HEADER]
    if frame:
        meta, data = result_array(document)
    else:
        doc = orjson.loads(document)
        values = result_from_json(doc) if isinstance(doc, dict) else None
        if values is None:
            return document, [JSON_HEADER]
        data = values
        meta = {key: value for key, value in doc.items() if key != "result"}
        meta["shape"] = list(data.shape)
    if want == NPY:
        out = io.BytesIO()
        np.save(out, data, allow_pickle=False)
        body = out.getvalue()
    else:
        body = data.tobytes()
    # ASCII JSON: a header value carries no raw UTF-8.
    summary = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode("ascii")
    return body, [(b"content-type", want.encode()), (RESULT_HEADER.encode(), summary)]
