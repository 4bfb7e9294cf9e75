"""``python -m bench.tools.step_costs``: what each step of a request costs on one core, W1 and
W2 sizes.

Micro-benchmarks of the product's own calls (best of 3 repeats), so a profile's shares can be
turned into time per request: parsing the submit in the API, parsing the record again in the
worker (JSON, or the binary frame), the kernel, encoding the result, and the API's result
reader parsing the result document back.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import numpy as np
import orjson

from bench.harness import payloads
from producer_api.models import Submission
from schemas.encoding import BINARY, decode_request, encode_binary
from schemas.messages import CalcRequest, RequestFields


def best_ms(fn: Callable[[], object], number: int) -> float:
    """Best-of-3 milliseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1000


def steps(label: str, body: bytes, op: str, args: dict[str, int],
          kernel: Callable[[np.ndarray], object]) -> list[tuple[str, float]]:
    """The per-request steps for one request body."""
    record = b'{"id":"x",' + body[1:]
    data = np.asarray(orjson.loads(body)["data"], dtype=np.float64)
    frame = encode_binary(RequestFields(id="x", op=op, args=args), data)
    value = kernel(data)
    result = orjson.dumps({"id": "x", "status": "ok", "result": value},
                          option=orjson.OPT_SERIALIZE_NUMPY)
    n = 2_000 if len(body) < 100_000 else 20
    print(f"{label}: request {len(body):,} B as JSON, {len(frame):,} B as a binary frame; "
          f"result {len(result):,} B")
    return [
        ("API: Submission.model_validate_json(body)",
         best_ms(lambda: Submission.model_validate_json(body), n)),
        ("worker: CalcRequest.model_validate_json(record) + np.asarray",
         best_ms(lambda: np.asarray(CalcRequest.model_validate_json(record).data), n)),
        ("worker: decode_request(binary frame)",
         best_ms(lambda: decode_request(frame, BINARY), n)),
        ("kernel", best_ms(lambda: kernel(data), n)),
        ("worker: orjson.dumps(result document)",
         best_ms(lambda: orjson.dumps({"id": "x", "result": value},
                                      option=orjson.OPT_SERIALIZE_NUMPY), n)),
        ("API result reader: orjson.loads(result document)",
         best_ms(lambda: orjson.loads(result), n)),
    ]


def main() -> None:
    """Print the table for W1 and W2."""
    w1 = payloads.w1_pool(1).bodies[0]
    w2 = payloads.w2_pool(1).bodies[0]
    n = payloads.W2_N
    for label, body, op, args, kernel in (
        ("W1 sum_of_squares, 1,000 floats", w1, "sum_of_squares", {},
         lambda x: float(np.dot(x, x))),
        ("W2 matmul 300x300", w2, "matmul", {"m": n, "k": n, "n": n},
         lambda x: x[: n * n].reshape(n, n) @ x[n * n:].reshape(n, n)),
    ):
        for name, ms in steps(label, body, op, args, kernel):
            print(f"  {ms:9.3f} ms  {name}")


if __name__ == "__main__":
    main()
