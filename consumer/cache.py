"""Result cache: identical requests (same op, same args, same data bytes) answered without compute.

Keys are a SHA-256 of the op, its validated args and the float64 data; values are the result
encoded as its first request asked: its JSON, or a binary result frame of its values
(``schemas.encoding.result_frame``), so a result asked for in binary is never written as JSON
only to be cached. ``LruCache`` lives in one worker process, bounded by count and by bytes (a
300×300 result is 720 KB as a frame, 1.7 MB as JSON); ``RedisCache`` (``CALCSTREAM_REDIS_URL``)
is shared by every worker. Both are called from the compute thread only, so the Redis client may
block. A cache that fails is skipped, never fatal: the request is computed instead.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import orjson

logger = logging.getLogger(__name__)

DEFAULT_BYTES = 256 * 1024 * 1024
"""What an in-process cache holds at most unless told otherwise."""


def cache_key(op: str, args: dict[str, Any], data: np.ndarray[Any, Any]) -> bytes:
    """A digest that is equal exactly when op, args and data bytes are equal."""
    # The layout's version first: workers that cached JSON only never read a frame as JSON.
    digest = hashlib.sha256(b"2\0" + op.encode())
    digest.update(b"\0")
    digest.update(orjson.dumps(args, option=orjson.OPT_SORT_KEYS))
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(data, dtype="<f8").tobytes())
    return digest.digest()


class ResultCache(Protocol):
    """Where encoded result values are remembered."""

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The cached value of each key, or None."""
        ...

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Remember values."""
        ...


class LruCache:
    """At most ``max_entries`` values and ``max_bytes`` of them in this process, least recently
    used evicted first; a value larger than ``max_bytes`` is not kept."""

    def __init__(self, max_entries: int, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        # Batches compute in several threads at once (max_in_flight).
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Look up and mark as recently used."""
        out: list[bytes | None] = []
        with self._lock:
            for key in keys:
                value = self._entries.get(key)
                if value is not None:
                    self._entries.move_to_end(key)
                out.append(value)
        return out

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Insert, evicting the least recently used beyond the cap."""
        with self._lock:
            for key, value in items:
                if len(value) > self.max_bytes:
                    continue
                old = self._entries.pop(key, None)
                if old is not None:
                    self.bytes -= len(old)
                # An exact-size copy: orjson's output keeps its whole over-allocated buffer
                # (about a page) resident for as long as the object lives.
                self._entries[key] = memoryview(value).tobytes()
                self.bytes += len(value)
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                self.bytes -= len(self._entries.popitem(last=False)[1])


def from_settings(redis_url: str | None, entries: int, ttl_s: int,
                  max_bytes: int = DEFAULT_BYTES) -> ResultCache | None:
    """Redis when a URL is given, else an in-process LRU of ``entries`` and ``max_bytes``
    (either 0: no cache)."""
    if redis_url:
        return RedisCache(redis_url, ttl_s)
    return LruCache(entries, max_bytes) if entries > 0 and max_bytes > 0 else None


class RedisCache:
    """A cache shared by all workers, with a TTL per entry."""

    def __init__(self, url: str, ttl_s: int, prefix: str = "calcstream:result:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.ttl_s = ttl_s
        self.prefix = prefix.encode()

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET; on a Redis failure every key misses."""
        if not keys:
            return []
        try:
            values = self._redis.mget([self.prefix + k for k in keys])
            return [v.encode() if isinstance(v, str) else v for v in values]
        except self._errors as exc:
            logger.warning("result cache unavailable, computing instead: %s", exc)
            return [None] * len(keys)

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """SET with expiry, pipelined; failures are logged and ignored."""
        if not items:
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(self.prefix + key, value, ex=self.ttl_s)
                pipe.execute()
        except self._errors as exc:
            logger.warning("result cache unavailable, results not cached: %s", exc)

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
