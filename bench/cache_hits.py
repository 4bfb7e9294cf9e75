"""``python -m bench.cache_hits``: the result cache's hit path against computing, side by side.

Times the worker's compute step (``process_batch``, the code that runs in the worker's thread)
over the same batches three ways: no cache, a cold LRU (every request a miss, so the cost of
keying and storing), and a warm LRU (every request a hit). Prints per-request cost and ratios.
With ``--redis URL`` the warm/cold runs use Redis instead.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from consumer.cache import LruCache, RedisCache, ResultCache
from consumer.processing import BatchContext, process_batch


@dataclass(frozen=True)
class Record:
    """A consumed request record as the compute step reads it."""

    key: bytes
    value: bytes
    offset: int
    topic: str = "calc.requests"
    partition: int = 0
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def batch(op: str, rows: np.ndarray, args: dict[str, int] | None = None) -> list[Record]:
    """One record per row."""
    return [Record(f"r{i}".encode(), orjson.dumps({"id": f"r{i}", "op": op,
                                                   "data": row.tolist(), "args": args or {}}), i)
            for i, row in enumerate(rows)]


def per_request_us(records: Sequence[Record], ctx: BatchContext, repeat: int) -> float:
    """Median over ``repeat`` runs of the compute step's cost per request, in µs."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        process_batch(records, ctx)
        runs.append((time.perf_counter() - started) / len(records) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="use Redis at this URL instead of the in-process LRU")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    workloads = {
        "sum_of_squares, 1,000 floats": batch("sum_of_squares", rng.random((512, 1000))),
        "matmul 60x60 @ 60x60": batch("matmul", rng.random((64, 2 * 60 * 60)),
                                      {"m": 60, "k": 60, "n": 60}),
        "inv 100x100": batch("inv", rng.random((64, 100 * 100)) + np.eye(100).ravel() * 100),
    }
    print(f"{'workload':<30} {'no cache µs':>12} {'cold µs':>10} {'warm (hit) µs':>14} "
          f"{'hit vs compute':>15}")
    for name, records in workloads.items():
        def fresh() -> ResultCache:
            if args.redis:
                return RedisCache(args.redis, ttl_s=60, prefix=f"bench:{time.time_ns()}:")
            return LruCache(100_000)

        plain = per_request_us(records, BatchContext("bench", "bench"), args.repeat)
        cold = statistics.median(
            per_request_us(records, BatchContext("bench", "bench", cache=fresh()), 1)
            for _ in range(args.repeat))
        warm_cache = fresh()
        process_batch(records, BatchContext("bench", "bench", cache=warm_cache))
        warm = per_request_us(records, BatchContext("bench", "bench", cache=warm_cache),
                              args.repeat)
        print(f"{name:<30} {plain:>12.1f} {cold:>10.1f} {warm:>14.1f} {plain / warm:>14.1f}x")


if __name__ == "__main__":
    main()
