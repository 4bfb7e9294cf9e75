"""Where a keyed record goes: the same partition every time, and ids spread over all of them."""

from __future__ import annotations

import uuid
from collections import Counter

from schemas.topics import partition_of


def test_a_key_always_lands_on_the_same_partition() -> None:
    key = uuid.uuid4().hex.encode()
    assert len({partition_of(key, [0, 1, 2, 3]) for _ in range(10)}) == 1
    assert partition_of(key, [7]) == 7


def test_request_ids_spread_evenly_over_the_partitions() -> None:
    partitions = list(range(6))
    ids = (uuid.UUID(int=i * 7_919).hex.encode() for i in range(6_000))  # fixed: no flaky tail
    counts = Counter(partition_of(key, partitions) for key in ids)
    assert set(counts) == set(partitions)
    assert max(counts.values()) < 1.2 * min(counts.values())
