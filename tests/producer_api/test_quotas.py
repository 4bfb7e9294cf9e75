"""Per-tenant quotas: one tenant over its rate, its requests in progress or its batch size
is answered 429 (or 422) with a reason, and another tenant does not notice."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from producer_api.errors import RateLimited
from producer_api.quotas import Quotas, TokenBucket
from producer_api.settings import ApiSettings
from tests.producer_api.tenants import Keyed, keyed_stack

BODY = {"op": "sum", "data": [1.0, 2.0]}


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, tokens=3.0, stamp=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert [bucket.take(100.0) for _ in range(4)][-1] == pytest.approx(0.5)  # never above 3


def test_quotas_are_counted_per_tenant() -> None:
    now = [0.0]
    quotas = Quotas(ApiSettings(tenant_rate_per_s=1.0, tenant_burst=1, tenant_max_in_progress=1),
                    clock=lambda: now[0])
    quotas.take("a")
    with pytest.raises(RateLimited, match="1 requests/s") as limited:
        quotas.take("a")
    assert limited.value.retry_after == pytest.approx(1.0)
    quotas.take("b")
    quotas.enter("a")
    with pytest.raises(RateLimited) as busy:
        quotas.enter("a")
    assert busy.value.code == "quota_exceeded"
    quotas.enter("b")
    quotas.leave("a")
    quotas.enter("a")
    assert not Quotas(ApiSettings()).active


@pytest.fixture(scope="module")
def keyed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    with keyed_stack(kafka_bootstrap, tmp_path_factory.mktemp("quotas"),
                     tenant_rate_per_s=0.2, tenant_burst=3, tenant_max_in_progress=1,
                     tenant_max_batch_items=3) as stack:
        yield stack


@pytest.fixture
async def http(keyed: Keyed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=keyed.api.base_url, timeout=30) as client:
        yield client


def key(keyed: Keyed, name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {keyed.keys[name]}"}


async def test_a_tenant_over_its_rate_gets_429_and_another_does_not(
        keyed: Keyed, http: httpx.AsyncClient) -> None:
    answers = [await http.post("/v1/calculations", json=BODY, headers=key(keyed, "acme"))
               for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    error = answers[-1].json()["error"]
    assert error["code"] == "rate_limited" and "0.2 requests/s" in error["message"]
    assert int(answers[-1].headers["retry-after"]) >= 1
    other = await http.post("/v1/calculations", json=BODY, headers=key(keyed, "bravo"))
    assert other.status_code == 202


async def test_a_tenant_with_a_request_in_progress_waits_for_it(
        keyed: Keyed, http: httpx.AsyncClient) -> None:
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"op": "sum", '
        await release.wait()
        yield b'"data": [1.0]}'

    held = asyncio.create_task(http.post(
        "/v1/calculations", content=slow_body(),
        headers={**key(keyed, "carol"), "content-type": "application/json"}))
    # Until its body has arrived, carol's POST is in progress; so is any GET of hers.
    async with asyncio.timeout(10):
        while True:
            busy = await http.get("/v1/calculations/x", headers=key(keyed, "carol"))
            if busy.status_code == 429:
                break
            assert busy.status_code == 404
    assert busy.json()["error"]["code"] == "quota_exceeded"
    assert (await http.get("/v1/calculations/x", headers=key(keyed, "dave"))).status_code == 404
    release.set()
    assert (await held).status_code == 202
    assert (await http.get("/v1/calculations/x", headers=key(keyed, "carol"))).status_code == 404


async def test_a_batch_over_the_tenants_size_is_refused_or_cut(
        keyed: Keyed, http: httpx.AsyncClient) -> None:
    items = [{"op": "sum", "data": [float(i)]} for i in range(4)]
    big = await http.post("/v1/calculations/batch", json=items, headers=key(keyed, "dave"))
    assert big.status_code == 422 and "tenant_max_batch_items" in big.text
    lines = "\n".join(httpx.Response(200, json=i).text for i in items).encode()
    cut = await http.post("/v1/calculations/batch", content=lines,
                          headers={**key(keyed, "dave"), "content-type": "application/x-ndjson"})
    assert cut.status_code == 413, cut.text
    doc = cut.json()
    assert doc["summary"]["accepted"] == 3 and "more than 3 items" in doc["error"]["message"]


async def test_an_npy_batch_over_the_tenants_size_is_refused(
        keyed: Keyed, http: httpx.AsyncClient) -> None:
    body = io.BytesIO()
    np.save(body, np.ones((4, 2)))
    big = await http.post("/v1/calculations/batch", params={"op": "sum"},
                          content=body.getvalue(),
                          headers={**key(keyed, "dave"), "content-type": "application/x-npy"})
    assert big.status_code == 422 and "4 rows" in big.json()["error"]["message"]
