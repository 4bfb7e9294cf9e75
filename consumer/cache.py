"""Result cache: identical requests (same op, same args, same data bytes) answered without compute.

Keys are a SHA-256 of the op, its validated args and the float64 data; values are the encoded
result value. ``LruCache`` lives in one worker process; ``RedisCache`` (``CALCSTREAM_REDIS_URL``)
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


def cache_key(op: str, args: dict[str, Any], data: np.ndarray[Any, Any]) -> bytes:
    """A digest that is equal exactly when op, args and data bytes are equal."""
    digest = hashlib.sha256(op.encode())
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
    """At most ``max_entries`` values in this process, least recently used evicted first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
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
                # An exact-size copy: orjson's output keeps its whole over-allocated buffer
                # (about a page) resident for as long as the object lives.
                self._entries[key] = memoryview(value).tobytes()
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def from_settings(redis_url: str | None, entries: int, ttl_s: int) -> ResultCache | None:
    """Redis when a URL is given, else an in-process LRU of ``entries`` (0: no cache)."""
    if redis_url:
        return RedisCache(redis_url, ttl_s)
    return LruCache(entries) if entries > 0 else None


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
