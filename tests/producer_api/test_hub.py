"""The WebSocket hub on its own: who gets what, and the slow-reader policy (no broker)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from producer_api import hub as hub_module
from producer_api.hub import Hub, Subscriber, result_message
from producer_api.store import ResultStore
from producer_api.turns import Turns
from schemas.encoding import result_frame
from tests.producer_api.helpers import Passes


def doc(i: int) -> bytes:
    return orjson.dumps({"id": f"r{i}", "result": i})


def decode(messages: list[bytes]) -> list[dict[str, object]]:
    return [orjson.loads(m) for m in messages]


async def test_the_all_stream_drops_its_oldest_and_says_how_many() -> None:
    sub = Subscriber(capacity=3)
    for i in range(5):
        sub.offer_stream(doc(i))
    got = decode(await sub.take())
    assert got[0] == {"type": "dropped", "count": 2}
    assert [m["id"] for m in got[1:]] == ["r2", "r3", "r4"]
    assert all(m["type"] == "result" for m in got[1:])


async def test_watched_results_and_replies_come_first_and_are_never_dropped() -> None:
    sub = Subscriber(capacity=3)
    sub.offer_stream(doc(100))
    for i in range(10):
        sub.offer_watched(doc(i))
    assert sub.offer_control(b'{"type":"subscribed"}')
    got = decode(await sub.take())
    assert got[0] == {"type": "subscribed"}
    assert [m["id"] for m in got[1:]] == [f"r{i}" for i in range(10)] + ["r100"]


async def test_a_client_that_reads_nothing_is_detected() -> None:
    sub = Subscriber(capacity=2)
    assert sub.offer_control(b"{}") and sub.offer_control(b"{}")
    assert not sub.offer_control(b"{}")


async def test_publish_routes_by_id_once_and_ends_the_watch() -> None:
    hub = Hub(ResultStore(100, 1 << 20, 60))
    by_id, everything, both = Subscriber(10), Subscriber(10), Subscriber(10)
    hub.watch(by_id, ["r1"])
    hub.watch(both, ["r1"])
    hub.watch_all(everything)
    hub.watch_all(both)
    hub.publish("r1", doc(1))
    hub.publish("r1", doc(1))  # a watch ends with its result: by_id gets it once
    assert [m["id"] for m in decode(await by_id.take())] == ["r1"]
    assert [m["id"] for m in decode(await both.take())] == ["r1", "r1"]
    assert len(decode(await everything.take())) == 2
    assert by_id.ids == set() and by_id.watching == 0


async def test_watching_a_retained_result_delivers_it_at_once() -> None:
    store = ResultStore(100, 1 << 20, 60)
    store.put_result("r7", "sum", doc(7))
    hub = Hub(store)
    sub = Subscriber(10)
    hub.watch(sub, ["r7", "r8"])
    assert decode(await sub.take()) == [{"type": "result", "id": "r7", "result": 7}]
    assert sub.ids == {"r8"}
    hub.remove(sub)
    hub.publish("r8", doc(8))
    assert sub.watching == 0


def test_a_result_message_is_the_result_plus_its_type() -> None:
    assert orjson.loads(result_message(b'{"id":"x","status":"ok"}')) == {
        "type": "result", "id": "x", "status": "ok"}


def test_a_binary_result_reaches_a_socket_as_its_json_document() -> None:
    value = result_frame(b'{"id":"x","status":"ok"}', np.array([1.0, np.nan]))
    assert orjson.loads(result_message(value)) == {
        "type": "result", "id": "x", "status": "ok", "result": [1.0, "NaN"]}


def test_a_binary_result_is_written_out_once_for_the_sockets_that_take_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[bytes] = []
    real = hub_module.result_to_json

    def counting(frame: bytes) -> bytes:
        written.append(frame)
        return real(frame)
    monkeypatch.setattr(hub_module, "result_to_json", counting)
    first = result_frame(b'{"id":"a","status":"ok"}', np.eye(2))
    second = result_frame(b'{"id":"b","status":"ok"}', np.eye(2))
    messages = [result_message(v) for v in (first, second, first, second, first)]
    assert written == [first, second]
    assert messages[0] == messages[2] == messages[4] != messages[1]
    assert orjson.loads(messages[1])["result"] == [[1.0, 0.0], [0.0, 1.0]]
    # An equal frame that is another object (another record) is written out again.
    result_message(bytes(bytearray(first)))
    assert len(written) == 3


async def test_large_binary_results_are_written_out_in_turns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each large frame's JSON is written in its own pass of the event loop (turns.py), and one
    # written out lately for another socket is not written again, nor waits for a turn.
    passes, written = Passes(), []
    real = hub_module.result_to_json

    def noting(frame: bytes) -> bytes:
        written.append((frame, passes.count))
        return real(frame)
    monkeypatch.setattr(hub_module, "result_to_json", noting)
    frames = [result_frame(orjson.dumps({"id": f"w{i}", "status": "ok"}), np.full(500, i))
              for i in range(3)]
    sub = Subscriber(10, turns=Turns(large_bytes=1_000))
    for value in frames:
        sub.offer_watched(value)
    sub.offer_stream(doc(7))  # a JSON result: only prefixed
    got = decode(await sub.take())
    assert [m["id"] for m in got] == ["w0", "w1", "w2", "r7"]
    assert [f for f, _ in written] == frames
    when = [n for _, n in written]
    assert when == sorted(when) and len(set(when)) == 3, when

    other = Subscriber(10, turns=Turns(large_bytes=1_000))
    other.offer_watched(frames[2])
    before = passes.count
    assert decode(await other.take())[0]["id"] == "w2"
    assert passes.count == before and len(written) == 3
