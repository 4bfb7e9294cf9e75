"""``calcstream dev`` (what ``make run`` starts): up, answering, and down cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from calcstream.broker import free_port


def test_dev_stack_serves_a_request_and_stops_cleanly_on_sigint() -> None:
    broker, api, metrics = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALCSTREAM_")}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "dev.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "calcstream.cli", "dev", "--broker-port", str(broker),
                 "--port", str(api), "--metrics-port", str(metrics)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        try:
            deadline = time.monotonic() + 90
            while "calcstream dev is up" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            response = httpx.post(f"http://127.0.0.1:{api}/v1/calculations?wait=10",
                                  json={"op": "sum_of_squares", "data": [1, 2, 3]}, timeout=15)
            assert response.status_code == 200, response.text
            assert response.json()["result"] == 14.0
            scraped = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5)
            assert "calcstream_worker_records_total" in scraped.text
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, log.read_text()
            assert "shut down gracefully" in log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
