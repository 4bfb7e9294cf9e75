"""``python -m bench.tools.store_memory``: resident bytes per entry of what calcstream keeps around.

* the API's ``ResultStore`` with 1,000,000 W1-shaped result documents (as the result reader
  stores them: exact-size copies of record values), next to the same documents in a plain
  ``dict[str, bytes]``, so the store's own overhead is visible;
* the worker's ``LruCache`` with 100,000 results encoded as ``process_batch`` encodes them
  (``orjson.dumps``), next to the same values copied to exact-size ``bytes``: orjson 3.13 hands
  back objects that keep about a page of memory each for as long as they are retained.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import orjson

from bench.harness.procs import rss_bytes
from consumer.cache import LruCache
from producer_api.store import ResultStore

COUNT = 1_000_000
CACHE_COUNT = 100_000


def document(i: int) -> tuple[str, bytes]:
    """A result as the worker writes it for a W1 request (server-assigned 32-hex id)."""
    rid = f"{i:032x}"
    now = time.time()
    return rid, orjson.dumps({
        "schema_version": 1, "id": rid, "status": "ok", "op": "sum_of_squares",
        "result": 333.3333333333 + i, "error": None, "worker": "vm-12345", "batch_size": 64,
        "submitted_at": now, "enqueued_at": now, "completed_at": now, "queue_ms": 10.25,
        "compute_ms": 0.75, "cached": False})


def exact(value: bytes) -> bytes:
    """A copy of exactly ``len(value)`` bytes (what a Kafka record value is)."""
    return memoryview(value).tobytes()


def measure(fill: Callable[[], None], count: int = 0) -> float:
    """RSS growth in bytes per entry while ``fill`` runs."""
    gc.collect()
    before = rss_bytes_self()
    fill()
    gc.collect()
    return (rss_bytes_self() - before) / (count or COUNT)


def rss_bytes_self() -> int:
    """This process's RSS."""
    return rss_bytes(os.getpid())[0]


def _fill_plain(target: dict[str, bytes]) -> None:
    for i in range(COUNT):
        rid, value = document(i)
        target[rid] = exact(value)


def _fill_store(store: ResultStore) -> None:
    for i in range(COUNT):
        rid, value = document(i)
        store.put_result(rid, "sum_of_squares", exact(value))


def _fill_cache(cache: LruCache, copy: bool) -> None:
    for i in range(CACHE_COUNT):
        value = orjson.dumps(333.3333333333 + i, option=orjson.OPT_SERIALIZE_NUMPY)
        cache.put_many([(i.to_bytes(32, "little"), exact(value) if copy else value)])


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
    as_is, copied = LruCache(CACHE_COUNT), LruCache(CACHE_COUNT)
    per_as_is = measure(lambda: _fill_cache(as_is, False), CACHE_COUNT)
    per_copied = measure(lambda: _fill_cache(copied, True), CACHE_COUNT)
    print(f"worker LruCache, values from orjson.dumps: {per_as_is:.0f} B per entry; "
          f"the same values copied: {per_copied:.0f} B per entry ({len(as_is):,} entries)")


if __name__ == "__main__":
    main()
