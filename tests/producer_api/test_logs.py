"""``python -m producer_api`` with CALCSTREAM_LOG_JSON=true: every line is JSON, secrets masked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from core.net import free_port
from tests.kafka import Deployment
from tests.processes import LoggedProcess
from tests.producer_api.conftest import new_deployment


@pytest.fixture
def fresh(kafka_bootstrap: str) -> Iterator[Deployment]:
    yield new_deployment(kafka_bootstrap)


async def test_the_api_logs_json_lines_with_its_settings_masked(fresh: Deployment) -> None:
    port = free_port()
    proc = LoggedProcess(
        [sys.executable, "-m", "producer_api", "--port", str(port)],
        fresh.env(CALCSTREAM_LOG_JSON="true",
                  CALCSTREAM_WORKER_METRICS_URLS="http://scraper:s3cret@127.0.0.1:9/metrics"),
        "api-json-logs")
    try:
        await proc.wait_for_log(r"result reader caught up", timeout=60)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/metrics")).status_code == 200
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert await proc.terminate() in (0, -15)
        lines = [orjson.loads(line) for line in proc.log().splitlines() if line.strip()]
    finally:
        proc.close()

    assert all(set(doc) >= {"ts", "level", "logger", "message"} for doc in lines)
    (start,) = [d for d in lines if d["message"].startswith("API starting with")]
    assert start["level"] == "INFO" and start["logger"] == "producer_api.main"
    assert "http://scraper:***@127.0.0.1:9/metrics" in start["message"]
    assert not any("s3cret" in d["message"] for d in lines)
    messages: list[Any] = [d["message"] for d in lines]
    assert "API shut down gracefully" in messages
