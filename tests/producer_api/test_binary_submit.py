"""A single submit with a binary body: raw float64 values or a .npy file, the op in the query;
answered as a JSON submit is, and a malformed body says what is wrong."""

from __future__ import annotations

import io
import json
import uuid

import httpx
import numpy as np
import pytest

from producer_api.acceptance import Acceptor
from producer_api.errors import InvalidRequest
from producer_api.intake import WANTS_BINARY_RESULT, from_binary, from_json
from producer_api.store import ResultStore
from schemas.encoding import (
    BINARY,
    CONTENT_TYPE_HEADER,
    RESULT_BINARY,
    decode_request,
    is_result_frame,
    result_array,
)
from tests.kafka import Deployment, TopicReader
from tests.producer_api.conftest import ApiStack
from tests.producer_api.helpers import results_via_ws

OCTETS = {"content-type": "application/octet-stream"}
NPY = {"content-type": "application/x-npy"}


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


async def test_raw_float64_and_npy_bodies_compute_like_json(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    data = np.concatenate([a.ravel(), b.ravel()])
    answer = await client.post("/v1/calculations", content=data.astype("<f8").tobytes(),
                               headers=OCTETS, params={"op": "matmul", "wait": 10,
                                                       "args": '{"m": 3, "k": 4, "n": 2}'})
    assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["result"], a @ b)
    square = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    answer = await client.post("/v1/calculations", content=npy(square), headers=NPY,
                               params={"op": "inv", "wait": 10})
    assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["result"], np.linalg.inv(square))
    ints = await client.post("/v1/calculations", content=npy(np.arange(5)), headers=NPY,
                             params={"op": "sum", "wait": 10})
    assert ints.json()["result"] == 10.0


async def test_a_binary_client_id_is_idempotent(client: httpx.AsyncClient) -> None:
    rid = f"bin-{uuid.uuid4().hex[:8]}"
    body = np.array([1.0, 2.0, 3.0]).tobytes()
    params = {"op": "sum", "id": rid, "wait": 10}
    first = await client.post("/v1/calculations", content=body, headers=OCTETS, params=params)
    again = await client.post("/v1/calculations", content=body, headers=OCTETS, params=params)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    other = await client.post("/v1/calculations", content=body[:-8], headers=OCTETS,
                              params=params)
    assert other.status_code == 409
    deadline = await client.post("/v1/calculations", content=body, headers=OCTETS,
                                 params={"op": "sum", "deadline": 1.0, "wait": 10})
    assert deadline.json()["status"] == "expired"


async def test_malformed_binary_bodies_say_what_is_wrong(client: httpx.AsyncClient) -> None:
    f64 = np.array([1.0, 2.0]).tobytes()
    cases = [
        ({"content": b"\0" * 12, "headers": OCTETS, "params": {"op": "sum"}},
         422, "whole number of float64"),
        ({"content": b"", "headers": OCTETS, "params": {"op": "sum"}},
         422, "whole number of float64"),
        ({"content": np.array([1.0, np.inf]).tobytes(), "headers": OCTETS,
          "params": {"op": "sum"}}, 422, "NaN or Infinity"),
        ({"content": np.zeros(8193).tobytes(), "headers": OCTETS, "params": {"op": "sum"}},
         413, "the limit is 65536"),  # the test stack's body limit comes first
        ({"content": f64, "headers": OCTETS}, 422, "needs ?op="),
        ({"content": f64, "headers": OCTETS, "params": {"op": "nope"}}, 422, "nope"),
        ({"content": f64, "headers": OCTETS, "params": {"op": "var", "args": "{"}}, 422,
         "JSON object"),
        ({"content": f64, "headers": OCTETS, "params": {"op": "matmul",
                                                        "args": '{"m": 3, "k": 4, "n": 2}'}},
         422, "matmul"),
        ({"content": b"not npy", "headers": NPY, "params": {"op": "sum"}}, 422, ".npy"),
        ({"content": npy(np.array(["a"])), "headers": NPY, "params": {"op": "sum"}}, 422,
         "dtype"),
        ({"content": f64, "headers": {"content-type": "text/plain"}, "params": {"op": "sum"}},
         415, "application/octet-stream"),
    ]
    for request, status, says in cases:
        answer = await client.post("/v1/calculations", **request)
        assert answer.status_code == status, (request, answer.text)
        assert says in answer.text, (request, answer.text)


def test_more_values_than_the_limit_are_refused_before_any_is_read() -> None:
    with pytest.raises(InvalidRequest, match="has 11 values; the limit is 10"):
        from_binary(np.zeros(11).tobytes(), "sum", {}, None, None, 10, 0.0)
    with pytest.raises(InvalidRequest, match="has 12 values; the limit is 10"):
        from_binary(npy(np.zeros((3, 4))), "sum", {}, None, None, 10, 0.0, npy=True)
    item = from_binary(np.arange(3.0).tobytes(), "sum", {}, "x-1", 5.0, 10, 1.0)
    assert item.id == "x-1" and item.fingerprint is not None
    assert decode_request(item.value, BINARY).fields.deadline == 5.0


async def test_a_client_that_accepts_binary_gets_the_results_values_in_binary(
        client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    rid = f"bin-out-{uuid.uuid4().hex[:8]}"
    answer = await client.post(
        "/v1/calculations", content=np.concatenate([a.ravel(), b.ravel()]).tobytes(),
        headers={**OCTETS, "accept": "application/x-npy"},
        params={"op": "matmul", "args": '{"m": 3, "k": 4, "n": 2}', "id": rid, "wait": 10})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-npy"
    assert answer.headers["location"] == f"/v1/calculations/{rid}"
    assert np.allclose(np.load(io.BytesIO(answer.content)), a @ b)
    meta = json.loads(answer.headers["calcstream-result"])
    assert meta["id"] == rid and meta["status"] == "ok" and meta["shape"] == [3, 2]
    # The same result for a client that wants raw values, and for one that wants JSON.
    raw = await client.get(f"/v1/calculations/{rid}",
                           headers={"accept": "application/octet-stream"})
    assert raw.headers["content-type"] == "application/octet-stream"
    assert np.array_equal(np.frombuffer(raw.content).reshape(3, 2),
                          np.load(io.BytesIO(answer.content)))
    as_json = await client.get(f"/v1/calculations/{rid}")
    assert as_json.headers["content-type"] == "application/json"
    assert np.allclose(as_json.json()["result"], a @ b) and as_json.json()["id"] == rid


async def test_json_results_convert_to_binary_and_results_without_values_stay_json(
        client: httpx.AsyncClient) -> None:
    npy_accept = {"accept": "application/json;q=0.5, application/x-npy"}
    computed = await client.post("/v1/calculations?wait=10",
                                 json={"op": "inv", "data": [4.0, 7.0, 2.0, 6.0]})
    rid = computed.json()["id"]
    converted = await client.get(f"/v1/calculations/{rid}", headers=npy_accept)
    assert converted.headers["content-type"] == "application/x-npy"
    assert np.allclose(np.load(io.BytesIO(converted.content)), computed.json()["result"])
    singular = await client.post("/v1/calculations?wait=10", headers=npy_accept,
                                 json={"op": "inv", "data": [1.0, 2.0, 2.0, 4.0]})
    assert singular.headers["content-type"] == "application/json"
    assert singular.json()["error"]["code"] == "singular_matrix"
    prefers_json = await client.get(f"/v1/calculations/{rid}",
                                    headers={"accept": "application/json, application/x-npy"})
    assert prefers_json.json()["result"] == computed.json()["result"]


async def test_a_json_clients_matrix_result_travels_in_binary_and_is_answered_in_json(
        client: httpx.AsyncClient, api: ApiStack, shared_deployment: Deployment) -> None:
    rng = np.random.default_rng(13)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    rid = f"json-matrix-{uuid.uuid4().hex[:8]}"
    body = {"id": rid, "op": "matmul", "data": np.concatenate([a.ravel(), b.ravel()]).tolist(),
            "args": {"m": 3, "k": 4, "n": 2}}
    answer = await client.post("/v1/calculations", params={"wait": 10}, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    doc = answer.json()
    assert doc["id"] == rid and doc["status"] == "ok" and "shape" not in doc
    assert np.array_equal(np.array(doc["result"]), a @ b)  # float64 written out exactly
    polled = await client.get(f"/v1/calculations/{rid}")
    assert polled.json() == doc
    assert (await results_via_ws(api.ws_url, [rid]))[rid]["result"] == doc["result"]
    async with TopicReader(shared_deployment.bootstrap, shared_deployment.topics.results) as r:
        records = await r.read_until(lambda recs: any(x.key == rid.encode() for x in recs))
    record = next(x for x in records if x.key == rid.encode())
    assert is_result_frame(record.value)
    assert (CONTENT_TYPE_HEADER, RESULT_BINARY.encode()) in record.headers
    assert np.array_equal(result_array(record.value)[1], a @ b)
    # A number stays JSON on the topic.
    summed = await client.post("/v1/calculations", params={"wait": 10},
                               json={"op": "sum", "data": [1.0, 2.0]})
    assert summed.json()["result"] == 3.0


class _NoPublisher:
    timeout = 1.0


def test_only_array_ops_ask_for_binary_results_and_only_when_set() -> None:
    matmul = from_json(b'{"op": "matmul", "data": [1, 2, 3], "args": {"m": 1, "k": 1, "n": 2}}',
                       100, 0.0)
    total = from_json(b'{"op": "sum", "data": [1, 2]}', 100, 0.0)
    store = ResultStore(10, 1 << 20, 60.0)
    on = Acceptor(store, _NoPublisher(), 5, binary_results=True)  # type: ignore[arg-type]
    off = Acceptor(store, _NoPublisher(), 5, binary_results=False)  # type: ignore[arg-type]
    assert WANTS_BINARY_RESULT in on._stamped(matmul, "", ()).headers
    assert WANTS_BINARY_RESULT not in on._stamped(total, "", ()).headers
    assert WANTS_BINARY_RESULT not in off._stamped(matmul, "", ()).headers
    # A client that asked for binary itself is asked for once.
    asked = matmul.stamped("", own=[WANTS_BINARY_RESULT])
    assert on._stamped(asked, "", ()).headers.count(WANTS_BINARY_RESULT) == 1
