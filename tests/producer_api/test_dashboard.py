"""The live dashboard in a real headless Chromium, fed by a real worker through the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.producer_api.chromium import Browser, require_chromium
from tests.producer_api.conftest import ApiStack, observed_stack


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """Its own API and worker, so the page's counts are exactly this test's traffic."""
    with observed_stack(kafka_bootstrap, ws_queue_size=10_000) as api:
        yield api


@pytest.fixture
async def http(stack: ApiStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        yield client


def text_of(selector: str) -> str:
    """A JavaScript expression: the text of the element."""
    return f"document.querySelector({orjson.dumps(selector).decode()}).textContent"


async def test_the_front_page_leads_to_the_dashboard_and_its_files(
    http: httpx.AsyncClient,
) -> None:
    front = await http.get("/")
    assert front.status_code == 307 and front.headers["location"] == "/dashboard"
    page = await http.get("/dashboard")
    assert page.headers["content-type"].startswith("text/html")
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = await http.get(f"/dashboard/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert name in page.text
    assert (await http.get("/dashboard/secrets.txt")).status_code == 404
    # Nothing is loaded from outside the machine.
    for text in (page.text, (await http.get("/dashboard/dashboard.js")).text,
                 (await http.get("/dashboard/dashboard.css")).text):
        assert "http://" not in text and "https://" not in text and "@import" not in text


async def test_the_dashboard_shows_live_results_in_headless_chromium(
    stack: ApiStack, http: httpx.AsyncClient, tmp_path: Path,
) -> None:
    require_chromium()
    tag = uuid.uuid4().hex[:8]
    async with Browser(tmp_path / "profile") as page:
        await page.goto(f"{stack.base_url}/")
        assert await page.evaluate("location.pathname") == "/dashboard"
        await page.wait_for("document.body.dataset.ws === 'open'")

        batch = [{"id": f"b-{tag}-{i}", "op": "sum", "data": [i, 1, 2]} for i in range(150)]
        answer = await http.post("/v1/calculations/batch", json=batch)
        assert answer.json()["accepted"] == 150
        singular = f"sing-{tag}"
        response = await http.post("/v1/calculations", params={"wait": 10},
                                   json={"id": singular, "op": "inv", "data": [1, 2, 2, 4]})
        assert response.json()["status"] == "error"
        await page.wait_for(f"{text_of('#results-total')} === '151'")
        last = f"last-{tag}"
        response = await http.post("/v1/calculations", params={"wait": 10},
                                   json={"id": last, "op": "l2_norm", "data": [3, 4]})
        assert response.json()["result"] == 5.0

        await page.wait_for(f"{text_of('#results-total')} === '152'")
        newest = "document.querySelector('#recent-results tbody tr')?.innerText"
        first_row = await page.wait_for(f"{newest}?.includes('{last}') && {newest}")
        assert last in first_row and "l2_norm" in first_row and "ok" in first_row
        errors = await page.wait_for(f"{text_of('#recent-errors tbody')}.includes('{singular}')"
                                     f" && {text_of('#recent-errors tbody')}")
        assert "singular_matrix" in errors
        rows = await page.evaluate("document.querySelectorAll('#recent-results tbody tr').length")
        assert rows == 25  # capped

        # The polled figures: the API's own counts and the worker it scrapes.
        await page.wait_for(f"{text_of('#api-accepted')} === '152'")
        assert stack.worker_settings is not None
        workers = await page.wait_for(
            f"{text_of('#workers tbody')}.includes('{stack.worker_settings.worker_id}')"
            f" && {text_of('#workers tbody')}")
        assert "up" in workers
        assert await page.wait_for(f"{text_of('#results-rate')} !== '–'")
        assert await page.wait_for(f"{text_of('#lat-p99')} !== '–'")
        assert await page.wait_for(f"{text_of('#batch-mean')} !== '–'")
        assert await page.evaluate(text_of("#consumer-lag")) != "–"
        assert await page.wait_for(f"{text_of('#loop-lag')} !== '–'")

        png = await page.screenshot(tmp_path / "dashboard.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
        assert page.errors == []
