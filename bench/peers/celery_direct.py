"""``python -m bench.peers.celery_direct N``: ``delay()`` N tasks, ``get()`` them all, print JSON.

The Celery figure without HTTP: one process queues every task, then collects every result.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import orjson

from bench.peers.celery_app import compute


def main() -> None:
    """Queue N sum_of_squares tasks over 1,000 floats; print rate and correctness."""
    count = int(sys.argv[1])
    rng = np.random.default_rng(7)
    pool = rng.random((16, 1000))
    rows = [row.tolist() for row in pool]
    expected = [float(np.dot(row, row)) for row in pool]
    started = time.perf_counter()
    pending = [compute.delay("sum_of_squares", rows[i % 16], {}) for i in range(count)]
    values = [p.get(timeout=120) for p in pending]
    elapsed = time.perf_counter() - started
    wrong = sum(abs(v - expected[i % 16]) > 1e-9 * expected[i % 16]
                for i, v in enumerate(values))
    print(orjson.dumps({"count": count, "seconds": elapsed, "rate": count / elapsed,
                        "wrong": wrong}).decode(), flush=True)


if __name__ == "__main__":
    main()
