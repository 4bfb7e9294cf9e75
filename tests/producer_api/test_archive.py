"""The compact archive of answered results, against a plain model (no broker)."""

from __future__ import annotations

import random
import tracemalloc
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer_api import archive as archive_module
from producer_api.archive import ALONE_BYTES, ResultArchive, _Index

Kept = tuple[str, str, bytes, bytes | None, float]


def w1_document(rid: str, now: float, rng: random.Random) -> bytes:
    """A result as the worker writes it for a W1 request."""
    return orjson.dumps({
        "schema_version": 1, "id": rid, "status": "ok", "op": "sum_of_squares",
        "result": rng.random() * 1000, "error": None, "worker": "vm-1234", "batch_size": 64,
        "submitted_at": now, "enqueued_at": now + rng.random() / 100,
        "completed_at": now + 0.01 + rng.random() / 100, "queue_ms": round(rng.random() * 20, 2),
        "compute_ms": round(rng.random(), 2), "cached": False})


steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 60), st.sampled_from(["sum", "mean", "inv"]),
              st.integers(0, 40), st.booleans()),
    st.tuples(st.just("drop"), st.just(0), st.just(""), st.just(0), st.just(False)),
), max_size=120)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(1, 8))
def test_the_archive_answers_like_a_list_forgotten_from_the_front(
    ops: list[tuple[str, int, str, int, bool]], segment: int,
) -> None:
    archive = ResultArchive(segment)
    model: list[Kept] = []
    for n, (action, name, op, pad, with_fp) in enumerate(ops):
        if action == "drop":
            if model:
                dropped = archive.oldest_size()
                assert 1 <= dropped <= len(model)
                archive.drop_oldest()
                model = model[dropped:]
            continue
        rid = f"id-{name}"
        if any(k[0] == rid for k in model):
            assert rid in archive
            continue
        # Every 41st or so is big enough to be kept alone.
        doc = orjson.dumps({"id": rid, "n": n}) + b" " * (ALONE_BYTES if pad == 40 else pad)
        fp = bytes([n % 256]) * 16 if with_fp else None
        archive.add(rid, op, doc, fp, float(n))
        model.append((rid, op, doc, fp, float(n)))
    assert len(archive) == len(model)
    assert archive.bytes == sum(len(k[2]) for k in model)
    for rid, op, doc, fp, when in model:
        got = archive.get(rid)
        assert got is not None
        assert (got.id, got.op, got.result, got.fingerprint, got.updated_at) == (
            rid, op, doc, fp, when)
    kept = {k[0] for k in model}
    for name in range(61):
        if f"id-{name}" not in kept:
            assert archive.get(f"id-{name}") is None and f"id-{name}" not in archive


def test_churn_through_index_rebuilds_keeps_every_live_id_and_none_of_the_forgotten() -> None:
    archive = ResultArchive(256)
    rng = random.Random(7)
    ids = [uuid.uuid4().hex for _ in range(60_000)]
    for i, rid in enumerate(ids):
        archive.add(rid, "sum_of_squares", w1_document(rid, float(i), rng), None, float(i))
        while len(archive) > 20_000:
            archive.drop_oldest()  # the index is rebuilt several times over this run
    kept = len(archive)
    assert 20_000 - 256 < kept <= 20_000
    assert all(rid in archive for rid in ids[-kept:])
    assert not any(rid in archive for rid in ids[:-kept][::97])
    doc = archive.get(ids[-kept])
    assert doc is not None and orjson.loads(doc.result)["id"] == ids[-kept]


def _bytes_per_result(fingerprinted: bool) -> float:
    """What 100,000 W1 results (ids minted like the API's) cost the archive, per result."""
    rng = random.Random(3)
    docs = [(rid, w1_document(rid, 1.8e9 + i / 2000, rng))
            for i, rid in enumerate(uuid.uuid4().hex for _ in range(100_000))]
    tracemalloc.start()
    try:
        archive = ResultArchive()
        for rid, doc in docs:
            archive.add(rid, "sum_of_squares", doc, rng.randbytes(16) if fingerprinted else None,
                        0.0)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    raw = sum(len(doc) for _, doc in docs) / len(docs)
    print(f"archive: {held / len(docs):.0f} B per result for {raw:.0f} B documents")
    return held / len(docs)


def test_an_answered_result_costs_a_fraction_of_its_document() -> None:
    """W1 results: what a million of them would cost, measured on 100,000. Documents alone are
    ~320 B and as objects ~700 B more; an id written just before the document that names it
    compresses to a back-reference, and results without a client id keep no fingerprint."""
    minted, client_ids = _bytes_per_result(False), _bytes_per_result(True)
    assert client_ids < 105, client_ids
    assert minted < 88 and minted < client_ids - 12, (minted, client_ids)


def test_ids_whose_keys_collide_are_told_apart_by_the_id_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The index keeps 32 bits of an id's hash: a filter. Every id on one key still reads back
    its own result, through rebuilds and forgetting."""
    monkeypatch.setattr(archive_module, "_key", lambda request_id: 7)
    archive = ResultArchive(16)
    ids = [f"id-{n}" for n in range(600)]
    for n, rid in enumerate(ids):
        archive.add(rid, "sum", orjson.dumps({"id": rid, "n": n}), None, float(n))
        if len(archive) > 400:
            archive.drop_oldest()
    kept = len(archive)
    for n, rid in enumerate(ids[-kept:], start=len(ids) - kept):
        got = archive.get(rid)
        assert got is not None and orjson.loads(got.result) == {"id": rid, "n": n}
    assert not any(rid in archive for rid in ids[:-kept])


def test_a_large_document_is_kept_alone_and_whole() -> None:
    archive = ResultArchive()
    archive.add("small", "sum", b'{"id":"small"}', None, 1.0)
    big = b'{"id":"big","result":[' + b"1.0," * ALONE_BYTES + b"1.0]}"
    archive.add("big", "matmul", big, None, 2.0)
    archive.add("after", "sum", b'{"id":"after"}', None, 3.0)
    got = archive.get("big")
    assert got is not None and got.result == big and got.op == "matmul"
    assert archive.oldest_size() == 1  # "small" was sealed on its own when "big" came
    archive.drop_oldest()
    archive.drop_oldest()
    assert "big" not in archive and archive.get("after") is not None


def test_the_index_keeps_equal_keys_apart_and_wraps_around() -> None:
    index = _Index()
    slots = index.slots
    last = slots - 1
    index.put(last, 1)  # lands in the last slot
    index.put(last, 2)  # the same key (two ids, one hash): wraps to slot 0
    index.put(last + slots, 3)  # another key of the same home slot
    assert sorted(index.find(last)) == [1, 2]
    index.floor = 2
    assert index.find(last) == [2]
    index.put(5, 4)
    for n in range(6, 2000):  # forces rebuilds
        index.put(n * 7919, n)
    assert index.slots > slots
    assert index.find(last) == [2] and index.find(5) == [4] and index.find(last + slots) == [3]
