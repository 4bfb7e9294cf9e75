"""``calcstream.client.Client`` against a real API, a real worker and the real broker."""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

import calcstream.client
import calcstream.client.errors
from calcstream.client import (
    CalculationError,
    Client,
    ClientError,
    Conflict,
    InvalidRequest,
    TimedOut,
)
from consumer import ops
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment


def reference(op: str, data: Any, args: dict[str, Any] | None = None) -> Any:
    spec = ops.get(op)
    values = np.asarray(data, dtype=np.float64).ravel()
    return spec.reference(values, spec.parse(values.size, args or {}))


def assert_close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                               rtol=1e-9, atol=1e-9)


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


async def test_the_docstring_example_works(stack: ApiStack,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    doc = calcstream.client.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\n", 1)[0])
    assert len(example.strip().splitlines()) == 3
    code = "async def main():\n" + textwrap.indent(
        example.replace("http://127.0.0.1:8000", stack.base_url), "    ")
    namespace: dict[str, Any] = {"Client": Client}
    exec(code, namespace)  # the module docstring's own text, run as written
    await namespace["main"]()
    assert capsys.readouterr().out == "14.0\n"


async def test_compute_submit_and_result(client: Client) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    product = await client.compute("matmul", np.concatenate([a.ravel(), b.ravel()]),
                                   args={"m": 3, "k": 4, "n": 2})
    assert product.status == "ok" and product.op == "matmul"
    assert_close(product.result, a @ b)

    request_id = await client.submit("std", [1.0, 2.0, 4.0, 8.0], args={"ddof": 1})
    result = await client.result(request_id, timeout=10)
    assert result.id == request_id
    assert_close(result.result, reference("std", [1, 2, 4, 8], {"ddof": 1}))
    # Asked again, the retained result arrives at once.
    started = time.monotonic()
    assert (await client.result(request_id, timeout=10)) == result
    assert time.monotonic() - started < 1


async def test_many_concurrent_computes_share_one_socket(client: Client) -> None:
    values = [[float(i), float(i + 1), 2.0] for i in range(200)]
    results = await asyncio.gather(*(client.compute("sum_of_squares", v) for v in values))
    assert [r.result for r in results] == [sum(x * x for x in v) for v in values]


async def test_an_error_result_raises_calculation_error(client: Client) -> None:
    with pytest.raises(CalculationError) as raised:
        await client.compute("inv", [1, 2, 2, 4])  # singular
    assert raised.value.result.status == "error"
    assert raised.value.code == "singular_matrix"

    past = time.time() - 1
    with pytest.raises(CalculationError) as expired:
        await client.compute("sum", [1], deadline=past)
    assert expired.value.result.status == "expired"


def _matmul_case() -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    return np.concatenate([a.ravel(), b.ravel()]), {"m": 3, "k": 4, "n": 2}, a @ b


async def test_compute_array_answers_the_values_as_an_array(client: Client) -> None:
    data, args, want = _matmul_case()
    product = await client.compute_array("matmul", data, args=args)
    assert product.dtype == np.float64 and product.shape == (3, 2)
    assert_close(product, want)
    total = await client.compute_array("sum", [1, 2, 3.5])  # a JSON body, a binary result
    assert total.shape == () and float(total) == 6.5
    with pytest.raises(CalculationError) as raised:
        await client.compute_array("inv", [1, 2, 2, 4])  # singular: an error result, JSON
    assert raised.value.code == "singular_matrix"


@pytest.fixture
def impatient(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """An API that never waits on a submit (max_wait_s 0), with a worker."""
    dep = new_deployment(kafka_bootstrap)
    with ApiStack(api_settings(dep, max_wait_s=0.0), dep.worker_settings()) as stack:
        yield stack


async def test_compute_array_past_the_apis_wait_fetches_the_values_once_answered(
        impatient: ApiStack) -> None:
    # The submit answers 202: the client awaits the result over the WebSocket, then fetches
    # its values as .npy.
    data, args, want = _matmul_case()
    async with Client(impatient.base_url) as client:
        assert_close(await client.compute_array("matmul", data, args=args, timeout=20), want)
        with pytest.raises(CalculationError) as raised:
            await client.compute_array("inv", [1, 2, 2, 4], timeout=20)
        assert raised.value.code == "singular_matrix"


@pytest.mark.parametrize(("op", "data", "args", "status", "field"), [
    ("nope", [1], None, 422, "op"),
    ("matmul", [1, 2, 3], {"m": 1, "k": 2, "n": 1}, 422, "data"),
    ("var", [1, 2], {"ddof": "x"}, 422, "args.ddof"),
    ("sum", [1.0, float("nan")], None, 422, "data.1"),
    ("sum", np.ones(19_000), None, 413, None),  # over the stack's 64 KiB body limit
    ("sum", np.array([1.0, np.nan]), None, 422, "data"),  # an array goes as raw float64
    ("var", np.ones(2), {"ddof": "x"}, 422, "args.ddof"),
])
async def test_invalid_requests_carry_the_servers_message_and_fields(
    client: Client, op: str, data: Any, args: dict[str, Any] | None, status: int,
    field: str | None,
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await client.submit(op, data, args=args)
    assert raised.value.status == status
    if field is not None:
        assert raised.value.fields[0]["field"] == field, raised.value.fields
        assert field in str(raised.value)


async def test_the_same_id_with_another_request_is_a_conflict(client: Client) -> None:
    request_id = unique("same")
    assert await client.submit("max", [1, 7], id=request_id) == request_id
    assert await client.submit("max", [1, 7], id=request_id) == request_id  # harmless
    with pytest.raises(Conflict) as raised:
        await client.submit("max", [1, 8], id=request_id)
    assert raised.value.status == 409 and raised.value.code == "id_conflict"
    assert (await client.result(request_id)).result == 7.0


async def test_a_late_result_says_what_the_api_knows(client: Client) -> None:
    never = unique("never")
    started = time.monotonic()
    with pytest.raises(TimedOut, match="does not know this id") as raised:
        await client.result(never, timeout=0.3)
    assert isinstance(raised.value, TimeoutError)
    assert time.monotonic() - started < 2
    with pytest.raises(InvalidRequest):
        await client.result("not an id")


async def test_map_npy_path_keeps_input_order(client: Client) -> None:
    rng = np.random.default_rng(7)
    pairs = rng.normal(size=(1000, 2 * 3 + 3 * 2))
    results = await client.map("matmul", pairs, args={"m": 2, "k": 3, "n": 2}, timeout=30)
    assert len(results) == len(pairs)
    assert len({r.id for r in results}) == len(pairs)
    for row, result in zip(pairs, results, strict=True):
        assert result.status == "ok"
        assert_close(result.result, row[:6].reshape(2, 3) @ row[6:].reshape(3, 2))


async def test_map_json_path_chunks_by_the_servers_count_limit(
    client: Client, stack: ApiStack,
) -> None:
    rng = np.random.default_rng(8)
    arrays = [rng.normal(size=int(rng.integers(2, 40))).tolist() for _ in range(1000)]
    assert len(arrays) > 4 * stack.settings.max_batch_count  # several JSON-array calls
    results = await client.map("var", arrays, args={"ddof": 1}, timeout=30)
    assert [r.id for r in results] == list(dict.fromkeys(r.id for r in results))
    for data, result in zip(arrays, results, strict=True):
        assert_close(result.result, reference("var", data, {"ddof": 1}))
    assert await client.map("sum", []) == []


async def test_map_refusals_name_the_items(client: Client) -> None:
    with pytest.raises(InvalidRequest, match="NaN") as local:
        await client.map("sum", [[1, 2], [3, float("inf")]])
    assert local.value.fields[0]["field"] == "1.data"  # refused before anything was sent

    arrays: list[list[float]] = [[1, 2, 3]] * 300 + [[5]] + [[1, 2]] * 10
    with pytest.raises(InvalidRequest) as refused:
        await client.map("var", arrays, args={"ddof": 1})
    assert refused.value.fields[0]["field"] == "300.data", refused.value.fields


async def test_stream_of_1000_ids(client: Client) -> None:
    prefix = unique("stream")
    ids = [f"{prefix}-{i}" for i in range(1000)]
    # The first half is done before the stream starts (retained results come at once), the
    # rest is submitted while it runs.
    await client.map("sum", [[float(i)] for i in range(10)])
    first = b"\n".join(b'{"id": "%s", "op": "sum", "data": [%d, 1]}' % (rid.encode(), i)
                       for i, rid in enumerate(ids[:500]))
    await client.post_batch(first, content_type="application/x-ndjson")

    async def later() -> None:
        body = b"\n".join(b'{"id": "%s", "op": "sum", "data": [%d, 1]}' % (rid.encode(), i)
                          for i, rid in enumerate(ids[500:], start=500))
        await client.post_batch(body, content_type="application/x-ndjson")

    posting = asyncio.create_task(later())
    seen: dict[str, float] = {}
    async for result in client.stream(ids, timeout=30):
        assert result.id not in seen
        seen[result.id] = float(result.result)  # type: ignore[arg-type]
    await posting
    assert seen == {rid: i + 1.0 for i, rid in enumerate(ids)}


async def test_stream_takes_ids_as_they_come_and_times_out(client: Client) -> None:
    async def growing() -> AsyncIterator[str]:
        for i in range(20):
            yield await client.submit("mean", [i, i + 2])

    results = [r async for r in client.stream(growing(), timeout=30)]
    assert sorted(r.result for r in results) == [i + 1.0 for i in range(20)]  # type: ignore

    with pytest.raises(TimedOut, match="2 results"):
        async for _ in client.stream([unique("a"), unique("b")], timeout=0.3):
            pass


async def test_a_client_that_was_not_started_says_so() -> None:
    client = Client("http://127.0.0.1:1")
    with pytest.raises(ClientError, match="not started"):
        await client.submit("sum", [1])
    with pytest.raises(ValueError, match="http"):
        Client("127.0.0.1:8000")
    await client.stop()
    await client.stop()


async def test_the_api_names_its_limits(client: Client, stack: ApiStack) -> None:
    limits = await client.limits()
    assert limits.max_batch_count == stack.settings.max_batch_count
    assert limits.ws_max_message_bytes == stack.settings.ws_max_message_bytes


def test_ids_in_the_docstring_tree_exist() -> None:
    tree = calcstream.client.errors.__doc__ or ""
    for name in re.findall(r"[├└]── (\w+)", tree):
        assert hasattr(calcstream.client.errors, name), name


async def test_numpy_arrays_travel_as_binary_with_their_id_and_deadline(client: Client) -> None:
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    rid = await client.submit("sum", data, id=f"np-{time.time_ns()}")
    assert (await client.result(rid, timeout=10)).result == 66.0
    assert await client.submit("sum", data, id=rid) == rid  # the same request again
    with pytest.raises(Conflict):
        await client.submit("sum", data + 1, id=rid)
    with pytest.raises(CalculationError) as expired:
        await client.compute("sum", np.ones(3), deadline=time.time() - 1)
    assert expired.value.result.status == "expired"
