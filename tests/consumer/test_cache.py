"""The result cache on its own: keys, LRU eviction, and a real Redis (the tests' own server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import orjson
import pytest

from consumer import ops
from consumer.cache import LruCache, RedisCache, cache_key
from consumer.processing import BatchContext, process_batch
from core.net import free_port
from schemas.encoding import is_result_frame, result_array
from tests.consumer.test_processing import BINARY_RESULT, Record, json_record


def test_keys_are_equal_exactly_for_equal_op_args_and_data() -> None:
    data = np.array([1.0, 2.0, 3.0])
    key = cache_key("var", {"ddof": 1}, data)
    assert key == cache_key("var", {"ddof": 1}, data.copy())
    assert key != cache_key("var", {"ddof": 0}, data)
    assert key != cache_key("std", {"ddof": 1}, data)
    assert key != cache_key("var", {"ddof": 1}, np.array([1.0, 2.0, 3.0000000000000004]))
    assert cache_key("sum", {"b": 1, "a": 2}, data) == cache_key("sum", {"a": 2, "b": 1}, data)


def test_lru_evicts_the_least_recently_used() -> None:
    cache = LruCache(max_entries=2)
    cache.put_many([(b"a", b"1"), (b"b", b"2")])
    assert cache.get_many([b"a"]) == [b"1"]  # a is now the most recent
    cache.put_many([(b"c", b"3")])
    assert cache.get_many([b"a", b"b", b"c"]) == [b"1", None, b"3"]
    assert len(cache) == 2


def test_lru_holds_at_most_its_bytes_and_keeps_no_value_larger_than_them() -> None:
    cache = LruCache(max_entries=100, max_bytes=10)
    cache.put_many([(b"a", b"1234"), (b"b", b"5678")])
    cache.put_many([(b"a", b"12")])  # replaced: counted once
    assert cache.bytes == 6
    cache.put_many([(b"c", b"abcdef")])  # 12 bytes: b, the least recently used, goes
    assert cache.get_many([b"a", b"b", b"c"]) == [b"12", None, b"abcdef"]
    assert cache.bytes == 8
    cache.put_many([(b"d", b"x" * 11)])  # larger than the whole cache: not kept, nothing evicted
    assert cache.get_many([b"a", b"c", b"d"]) == [b"12", b"abcdef", None]
    assert len(cache) == 2 and cache.bytes == 8


def test_a_result_asked_for_in_binary_is_cached_as_a_frame_not_written_as_json() -> None:
    ctx = BatchContext("w", "g", cache=LruCache(100))
    data = [4.0, 7.0, 2.0, 6.0]
    record = Record(b"a", json_record("a", "inv", data).value, BINARY_RESULT)
    process_batch([record], ctx, clock=lambda: 1.0)
    (kept,) = ctx.cache._entries.values()  # type: ignore[union-attr]
    assert is_result_frame(kept)
    assert np.allclose(result_array(kept)[1], np.linalg.inv(np.reshape(data, (2, 2))))


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_lru_entries_cost_their_size_not_the_encoders_buffer() -> None:
    # orjson's output object holds about a page resident; 20,000 cached floats kept as such
    # cost ~80 MB, as exact-size copies a few MB.
    entries = 20_000
    cache = LruCache(max_entries=entries)
    before = resident_bytes()
    for i in range(entries):
        cache.put_many([(i.to_bytes(32, "little"), orjson.dumps(i * 1.5))])
    per_entry = (resident_bytes() - before) / entries
    assert len(cache) == entries
    assert per_entry < 1024, f"{per_entry:.0f} bytes resident per cached entry"


@pytest.fixture
def redis_cache(redis_url: str) -> Iterator[RedisCache]:
    cache = RedisCache(f"{redis_url}/13", ttl_s=60, prefix=f"calcstream-test:{uuid.uuid4().hex}:")
    yield cache
    cache.close()


def test_redis_cache_round_trip_with_expiry(redis_cache: RedisCache) -> None:
    redis_cache.put_many([(b"k1", b"14.0"), (b"k2", b"[1.0,2.0]")])
    assert redis_cache.get_many([b"k1", b"missing", b"k2"]) == [b"14.0", None, b"[1.0,2.0]"]
    ttl = redis_cache._redis.ttl(redis_cache.prefix + b"k1")  # noqa: SLF001
    assert 0 < ttl <= 60


def test_unreachable_redis_misses_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60)
    try:
        assert cache.get_many([b"a", b"b"]) == [None, None]
        cache.put_many([(b"a", b"1")])
    finally:
        cache.close()
    assert "result cache unavailable" in caplog.text


def test_a_repeated_request_is_answered_from_the_cache_with_the_same_value() -> None:
    ctx = BatchContext("w", "g", cache=LruCache(100))
    data = np.random.default_rng(3).normal(size=(4, 4)).ravel()
    first = process_batch([json_record("a", "inv", data)], ctx)
    second = process_batch([json_record("b", "inv", data, offset=8)], ctx)
    other = process_batch([json_record("c", "inv", data * 2, offset=9)], ctx)
    one, two, three = (orjson.loads(out.results[0][1]) for out in (first, second, other))
    assert (one["cached"], two["cached"], three["cached"]) == (False, True, False)
    assert (first.cache_hits, second.cache_hits) == (0, 1)
    assert two["id"] == "b" and two["result"] == one["result"]
    assert np.allclose(two["result"], np.linalg.inv(data.reshape(4, 4)))


def test_only_ops_that_cost_more_than_their_key_are_cached() -> None:
    cache = LruCache(100)
    ctx = BatchContext("w", "g", cache=cache)
    data = np.arange(16.0)
    for offset in (1, 2):
        out = process_batch([json_record(f"s{offset}", "sum", data, offset=offset)], ctx)
        assert orjson.loads(out.results[0][1])["cached"] is False
    assert len(cache) == 0
    assert {op.name for op in ops.REGISTRY.values() if op.cached} == {"matmul", "inv"}


def test_a_result_too_big_to_publish_is_neither_encoded_for_nor_kept_in_the_cache() -> None:
    cache = LruCache(100)
    ctx = BatchContext("w", "g", max_result_bytes=1000, cache=cache)
    data = np.ones(2 * 30 * 30)
    out = process_batch([json_record("big", "matmul", data, args={"m": 30, "k": 30, "n": 30})],
                        ctx)
    doc = orjson.loads(out.results[0][1])
    assert doc["status"] == "error" and doc["error"]["code"] == "result_too_large"
    assert len(cache) == 0
