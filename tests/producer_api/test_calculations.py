"""Single submits, polling, waiting and idempotent client ids, against the real stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from consumer import ops
from schemas.encoding import BINARY, decode_request
from schemas.messages import CalcResult
from tests.kafka import TopicReader
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment
from tests.producer_api.helpers import close, example, expected, submit_and_wait


def rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


async def poll(client: httpx.AsyncClient, request_id: str, timeout: float = 10.0
               ) -> dict[str, Any]:
    """GET the id until it is no longer queued."""
    async with asyncio.timeout(timeout):
        while True:
            doc: dict[str, Any] = (await client.get(f"/v1/calculations/{request_id}")).json()
            if doc["status"] != "queued":
                return doc
            await asyncio.sleep(0.02)  # the poll interval, not a wait for an event


async def test_every_op_answers_with_the_right_numbers(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(3)
    for name in ops.REGISTRY:
        for _ in range(2):
            body = example(name, rng)
            doc = await submit_and_wait(client, body)
            CalcResult.model_validate(doc)
            assert doc["status"] == "ok", doc
            assert close(doc["result"], expected(body)), (body, doc)


async def test_submit_answers_202_with_a_location_to_poll(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/calculations", json={"op": "sum", "data": [1, 2, 3.5]})
    assert response.status_code == 202
    doc = response.json()
    assert doc == {"id": doc["id"], "status": "queued"}
    assert response.headers["location"] == f"/v1/calculations/{doc['id']}"
    state = (await client.get(response.headers["location"])).json()
    assert state["id"] == doc["id"] and state["status"] in ("queued", "ok")
    final = await poll(client, doc["id"])
    assert final["status"] == "ok" and final["result"] == 6.5
    assert final["submitted_at"] is not None


async def test_wait_returns_the_result_when_it_comes_in_time(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await client.post("/v1/calculations", params={"wait": 5},
                                 json={"op": "matmul", "data": [1, 2, 3, 4, 5, 6, 7, 8],
                                       "args": {"m": 2, "k": 2, "n": 2}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == [[19.0, 22.0], [43.0, 50.0]]
    assert response.headers["location"].endswith(response.json()["id"])
    assert time.monotonic() - started < 5


async def test_wait_misses_with_202_when_no_result_comes(kafka_bootstrap: str) -> None:
    dep = await asyncio.to_thread(new_deployment, kafka_bootstrap)
    with ApiStack(api_settings(dep)) as lonely:  # no worker: nothing will answer
        async with httpx.AsyncClient(base_url=lonely.base_url) as http:
            started = time.monotonic()
            response = await http.post("/v1/calculations", params={"wait": 0.3},
                                       json={"op": "sum", "data": [1]})
            elapsed = time.monotonic() - started
            assert response.status_code == 202, response.text
            assert 0.3 <= elapsed < 2
            request_id = response.json()["id"]
            state = (await http.get(f"/v1/calculations/{request_id}")).json()
            assert state["status"] == "queued" and state["op"] == "sum"
            assert state["accepted_at"] > 0


async def test_wait_is_clamped_not_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/calculations", params={"wait": 1e9},
                                 json={"op": "max", "data": [1, 9]})
    assert response.status_code == 200 and response.json()["result"] == 9.0


async def test_resubmitting_a_client_id_returns_its_state_without_publishing_again(
    client: httpx.AsyncClient, api: ApiStack, shared_deployment: Any,
) -> None:
    request_id = rid("idem")
    body = {"id": request_id, "op": "mean", "data": [1, 2, 3]}
    first = await client.post("/v1/calculations", json=body)
    assert first.status_code in (200, 202) and first.json()["id"] == request_id
    again = await client.post("/v1/calculations", params={"wait": 5}, json=body)
    assert again.status_code == 200 and again.json()["result"] == 2.0
    once_more = await client.post("/v1/calculations", json=dict(reversed(body.items())))
    assert once_more.status_code == 200 and once_more.json() == again.json()
    conflict = await client.post("/v1/calculations",
                                 json={**body, "data": [1, 2, 4]})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "id_conflict"
    async with TopicReader(shared_deployment.bootstrap,
                           shared_deployment.topics.requests) as reader:
        records = await reader.read_more(quiet=0.3)
    assert [r.key for r in records].count(request_id.encode()) == 1


async def test_concurrent_submits_of_one_id_publish_once(
    client: httpx.AsyncClient, shared_deployment: Any,
) -> None:
    request_id = rid("race")
    body = {"id": request_id, "op": "sum", "data": [5, 5]}
    answers = await asyncio.gather(*(client.post("/v1/calculations", json=body)
                                     for _ in range(10)))
    assert {a.status_code for a in answers} <= {200, 202}
    assert {a.json()["id"] for a in answers} == {request_id}
    async with TopicReader(shared_deployment.bootstrap,
                           shared_deployment.topics.requests) as reader:
        records = await reader.read_more(quiet=0.3)
    assert [r.key for r in records].count(request_id.encode()) == 1


async def test_submits_are_written_as_binary_frames(
    client: httpx.AsyncClient, shared_deployment: Any,
) -> None:
    request_id = rid("frame")
    response = await client.post("/v1/calculations", params={"wait": 5},
                                 json={"id": request_id, "op": "sum", "data": [0.5, 2]})
    assert response.json()["result"] == 2.5
    async with TopicReader(shared_deployment.bootstrap,
                           shared_deployment.topics.requests) as reader:
        records = await reader.read_more(quiet=0.3)
    (record,) = [r for r in records if r.key == request_id.encode()]
    assert dict(record.headers)["content-type"] == BINARY.encode()
    request = decode_request(record.value, BINARY)
    assert request.fields.id == request_id and request.data.tolist() == [0.5, 2.0]


async def test_get_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/calculations/never-seen-this")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_results_that_are_not_finite_come_back_as_json_safe_strings(
    client: httpx.AsyncClient,
) -> None:
    doc = await submit_and_wait(client, {"op": "sum", "data": [1e308, 1e308]})
    assert doc["status"] == "ok" and doc["result"] == "Infinity"
    doc = await submit_and_wait(client, {"op": "inv", "data": [1e308, 1e308, 1e-308, 0]})
    assert doc["status"] in ("ok", "error")


async def test_singular_matrix_and_past_deadline_are_results_not_failures(
    client: httpx.AsyncClient,
) -> None:
    singular = await submit_and_wait(client, {"op": "inv", "data": [1, 2, 2, 4]})
    assert singular["status"] == "error"
    assert singular["error"]["code"] == "singular_matrix"
    late = await submit_and_wait(client, {"op": "sum", "data": [1], "deadline": 1.0})
    assert late["status"] == "expired"


@pytest.mark.parametrize(("body", "field"), [
    (b'{"op": "sum", "data": [NaN]}', "data.0"),
    (b'{"op": "sum", "data": [1, Infinity]}', "data.1"),
    (b'{"op": "sum", "data": [1e400]}', "data.0"),
    (b'{"op": "sum", "data": ["-Infinity"]}', "data.0"),
    (b'{"op": "nope", "data": [1]}', "op"),
    (b'{"op": "sum", "data": []}', "data"),
    (b'{"op": "sum"}', "data"),
    (b'{"data": [1]}', "op"),
    (b'{"op": "matmul", "data": [1, 2, 3]}', "args.m"),
    (b'{"op": "matmul", "data": [1, 2, 3], "args": {"m": 1, "k": 1, "n": 1}}', "data"),
    (b'{"op": "dot", "data": [1, 2, 3]}', "data"),
    (b'{"op": "var", "data": [1, 2], "args": {"ddof": 5}}', "data"),
    (b'{"op": "var", "data": [1, 2], "args": {"bogus": 1}}', "args.bogus"),
    (b'{"op": "sum", "data": [1], "id": "has space"}', "id"),
    (b'{"op": "sum", "data": [1], "colour": "red"}', "colour"),
    (b'{"op": "sum", "data": [1], "deadline": "soon"}', "deadline"),
    (b'{"op": "sum", "data": [1]', "body"),
    (b'[1, 2]', "body"),
    (b"", "body"),
])
async def test_invalid_requests_are_422_naming_the_field(
    client: httpx.AsyncClient, body: bytes, field: str,
) -> None:
    response = await client.post("/v1/calculations", content=body,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"][0]["field"] == field, error


async def test_too_many_values_is_422(client: httpx.AsyncClient, api: ApiStack) -> None:
    limit = api.settings.max_array_length
    response = await client.post("/v1/calculations",
                                 content=b'{"op":"sum","data":[%s]}' % b",".join(
                                     [b"1"] * (limit + 1)),
                                 headers={"content-type": "application/json"})
    assert response.status_code in (413, 422)
    if response.status_code == 422:
        assert response.json()["error"]["fields"][0]["field"] == "data"


async def test_bad_query_parameters_are_422(client: httpx.AsyncClient) -> None:
    for wait in ("soon", "-1", "nan"):
        response = await client.post("/v1/calculations", params={"wait": wait},
                                     json={"op": "sum", "data": [1]})
        assert response.status_code == 422, (wait, response.text)
    response = await client.get("/v1/calculations/bad id!")
    assert response.status_code == 422


async def test_ops_lists_every_registered_op_with_its_args_schema(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/ops")
    assert response.status_code == 200
    listed = {op["name"]: op for op in response.json()}
    assert set(listed) == set(ops.REGISTRY)
    assert listed["matmul"]["args"]["required"] == ["m", "k", "n"]
    assert "ddof" in listed["var"]["args"]["properties"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    doc = ready.json()
    assert doc["status"] == "ready" and doc["broker"] and doc["results_caught_up"]
    assert set(doc["loop_lag_ms"]) >= {"p50_ms", "p99_ms", "max_ms"}


async def test_unknown_paths_and_methods_answer_in_the_error_envelope(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/v2/nothing")).json()["error"]["code"] == "not_found"
    response = await client.delete("/v1/calculations")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
