"""The result cache's hit path against computing, side by side (``python -m bench --only cache``,
or on its own: ``python -m bench.workloads.result_cache [--redis URL]``).

Times the worker's compute step (``process_batch``, the code that runs in the worker's thread)
over the same batches three ways: no cache, a cold cache (every request a miss: the cost of
keying and storing), and a warm cache (every request a hit). Every hit is checked against the
computed answer. Figures are per request, in µs. Every op is cached here, the one-pass reductions
the worker never caches included, to show why it does not.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from consumer import ops
from consumer.cache import LruCache, RedisCache, ResultCache
from consumer.processing import BatchContext, process_batch
from schemas.encoding import BINARY, CONTENT_TYPE_HEADER, encode_binary
from schemas.messages import RequestFields


@dataclass
class Record:
    """A consumed request record as the compute step reads it."""

    key: bytes | None
    value: bytes | None
    offset: int
    topic: str = "calc.requests"
    partition: int = 0
    timestamp: int = 0
    headers: Sequence[tuple[str, bytes]] = ()


def batch(op: str, rows: np.ndarray[Any, Any], args: dict[str, int] | None = None) -> list[Record]:
    """One JSON request record per row."""
    return [Record(f"r{i}".encode(), orjson.dumps({"id": f"r{i}", "op": op,
                                                   "data": row.tolist(), "args": args or {}}), i)
            for i, row in enumerate(rows)]


def binary_batch(op: str, rows: np.ndarray[Any, Any],
                 args: dict[str, int] | None = None) -> list[Record]:
    """One binary-frame request record per row."""
    headers = ((CONTENT_TYPE_HEADER, BINARY.encode()),)
    return [Record(f"r{i}".encode(),
                   encode_binary(RequestFields(id=f"r{i}", op=op, args=args or {}), row), i,
                   headers=headers)
            for i, row in enumerate(rows)]


def workloads() -> dict[str, list[Record]]:
    """A cheap reduction, a small matmul and a costly inversion, JSON and binary: where a hit
    saves little to most, and what decoding the request costs on every hit."""
    rng = np.random.default_rng(0)
    squares = rng.random((512, 1000))
    matmul = rng.random((64, 2 * 60 * 60))
    inv = rng.random((64, 100 * 100)) + np.eye(100).ravel() * 100
    dims = {"m": 60, "k": 60, "n": 60}
    return {
        "sum_of_squares, 1,000 floats": batch("sum_of_squares", squares),
        "matmul 60x60 @ 60x60": batch("matmul", matmul, dims),
        "inv 100x100": batch("inv", inv),
        "sum_of_squares, binary": binary_batch("sum_of_squares", squares),
        "matmul 60x60, binary": binary_batch("matmul", matmul, dims),
        "inv 100x100, binary": binary_batch("inv", inv),
    }


def per_request_us(records: Sequence[Record], ctx: BatchContext, repeat: int) -> float:
    """Median over ``repeat`` runs of the compute step's cost per request, in µs."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        process_batch(records, ctx)
        runs.append((time.perf_counter() - started) / len(records) * 1e6)
    return statistics.median(runs)


def _answers(records: Sequence[Record], ctx: BatchContext) -> list[tuple[Any, bool]]:
    docs = [orjson.loads(r.value) for r in process_batch(records, ctx).results]
    return [(doc["result"], bool(doc.get("cached"))) for doc in docs]


@contextlib.contextmanager
def every_op_cached() -> Iterator[None]:
    """Cache every op, the one-pass reductions the worker computes every time included."""
    saved = dict(ops.REGISTRY)
    ops.REGISTRY.update({name: dataclasses.replace(op, cached=True) for name, op in saved.items()})
    try:
        yield
    finally:
        ops.REGISTRY.update(saved)


def measure(fresh: Callable[[], ResultCache], repeat: int = 5) -> dict[str, dict[str, float]]:
    """Per workload: µs per request with no cache, a cold and a warm cache, and hits checked."""
    with every_op_cached():
        return _measure(fresh, repeat)


def _measure(fresh: Callable[[], ResultCache], repeat: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for name, records in workloads().items():
        plain = per_request_us(records, BatchContext("bench", "bench"), repeat)
        cold = statistics.median(
            per_request_us(records, BatchContext("bench", "bench", cache=fresh()), 1)
            for _ in range(repeat))
        warm = BatchContext("bench", "bench", cache=fresh())
        computed = _answers(records, warm)
        hit = per_request_us(records, warm, repeat)
        answered = _answers(records, warm)
        wrong = sum(1 for (a, _), (b, cached) in zip(computed, answered, strict=True)
                    if a != b or not cached)
        figures[name] = {"no_cache_us": plain, "cold_us": cold, "hit_us": hit,
                         "hit_speedup": plain / hit, "wrong": float(wrong)}
    return figures


def lru() -> ResultCache:
    """A fresh in-process cache, the worker's default size."""
    return LruCache(100_000)


def redis_at(url: str) -> Callable[[], ResultCache]:
    """Fresh, separately prefixed Redis caches at ``url``."""
    return lambda: RedisCache(url, ttl_s=60, prefix=f"bench:{time.time_ns()}:")


def main() -> None:
    """Print the figures for one cache kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", help="use Redis at this URL instead of the in-process LRU")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    figures = measure(redis_at(args.redis) if args.redis else lru, args.repeat)
    print(f"{'workload':<30} {'no cache µs':>12} {'cold µs':>10} {'hit µs':>10} "
          f"{'hit vs compute':>15} {'wrong':>6}")
    for name, f in figures.items():
        print(f"{name:<30} {f['no_cache_us']:>12.1f} {f['cold_us']:>10.1f} {f['hit_us']:>10.1f} "
              f"{f['hit_speedup']:>14.1f}x {f['wrong']:>6.0f}")


if __name__ == "__main__":
    main()
