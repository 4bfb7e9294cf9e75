"""``python -m bench.store_memory``: bytes per remembered result in the API's ``ResultStore``.

Fills a store with 1,000,000 results shaped like the worker's W1 result documents and reports
the growth of this process's RSS, next to the bare minimum (the same documents in a plain
``dict[str, bytes]``), so the store's own overhead per entry is visible.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import orjson

from bench.procs import rss_bytes
from producer_api.results import ResultStore

COUNT = 1_000_000


def document(i: int) -> tuple[str, bytes]:
    """A result as the worker writes it for a W1 request (server-assigned 32-hex id)."""
    rid = f"{i:032x}"
    now = time.time()
    return rid, orjson.dumps({
        "schema_version": 1, "id": rid, "status": "ok", "op": "sum_of_squares",
        "result": 333.3333333333 + i, "error": None, "worker": "vm-12345", "batch_size": 64,
        "submitted_at": now, "enqueued_at": now, "completed_at": now, "queue_ms": 10.25,
        "compute_ms": 0.75, "cached": False})


def measure(fill: Callable[[], None]) -> float:
    """RSS growth in bytes per entry while ``fill`` runs."""
    gc.collect()
    before = rss_bytes_self()
    fill()
    gc.collect()
    return (rss_bytes_self() - before) / COUNT


def rss_bytes_self() -> int:
    """This process's RSS."""
    return rss_bytes(os.getpid())[0]


def _fill_plain(target: dict[str, bytes]) -> None:
    for i in range(COUNT):
        rid, value = document(i)
        target[rid] = value


def _fill_store(store: ResultStore) -> None:
    for i in range(COUNT):
        rid, value = document(i)
        store.put_result(rid, "sum_of_squares", value)


def main() -> None:
    """Print bytes per entry: the documents alone, then the ResultStore."""
    size = sum(len(document(i)[1]) for i in range(1_000)) / 1_000
    store = ResultStore(COUNT, 8 * 1024**3, 900.0)
    per_store = measure(lambda: _fill_store(store))
    plain: dict[str, bytes] = {}  # both stay alive, so neither reuses the other's memory
    per_plain = measure(lambda: _fill_plain(plain))
    print(f"result document: {size:.0f} B on average")
    print(f"dict[str, bytes] of the documents: {per_plain:.0f} B per entry")
    print(f"ResultStore: {per_store:.0f} B per entry ({len(store):,} entries)")


if __name__ == "__main__":
    main()
