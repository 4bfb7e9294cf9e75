"""``calcstream ingest --via-api``: the real CLI through a real API, worker and broker."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from core.net import free_port
from tests.calcstream.cli.test_ingest import _assert_close, _reference, _results
from tests.producer_api.conftest import ApiStack, api_settings, new_deployment
from tests.stack import calcstream


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str) -> Iterator[ApiStack]:
    """An API and a worker on fresh topics; the CLI gets only the API's URL."""
    dep = new_deployment(kafka_bootstrap)
    with ApiStack(api_settings(dep), dep.worker_settings()) as stack:
        yield stack


def ingest(*args: str) -> Any:
    """Run ``calcstream ingest``; with no CALCSTREAM_* variables and a dead --bootstrap, only
    the API can be in use."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALCSTREAM_")}
    return calcstream("ingest", *args, "--bootstrap", f"127.0.0.1:{free_port()}", env=env)


def test_ndjson_through_the_api_with_results(api: ApiStack, tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    requests: dict[str, tuple[str, list[float], dict[str, Any]]] = {}
    lines = []
    for number in range(1, 702):
        if number == 4:
            lines.append(b'{"op": "sum", "data": []}')  # skipped by the CLI itself
            continue
        op, args = ("var", {"ddof": 1}) if number % 2 else ("l2_norm", {})
        data = rng.normal(size=int(rng.integers(2, 20))).tolist()
        doc: dict[str, Any] = {"op": op, "data": data, "args": args}
        if number % 3 == 0:
            doc["id"] = f"own-{number}"
        lines.append(orjson.dumps(doc))
        requests[doc.get("id", f"api-{number}")] = (op, data, args)
    source = tmp_path / "requests.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "results.ndjson"

    run = ingest(str(source), "--via-api", api.base_url, "--results", str(out), "--id-prefix",
                 "api", "--window", "200", "--timeout", "30")

    assert run.returncode == 1, run.stderr  # the empty line 4 is reported
    assert "line 4: data" in run.stderr
    assert f"sent 700 requests to {api.base_url}" in run.stderr
    assert "received 700 of 700 results" in run.stderr and "0 missing" in run.stderr
    results = _results(out)
    assert set(results) == set(requests)
    for request_id, (op, data, args) in requests.items():
        assert results[request_id]["status"] == "ok"
        _assert_close(results[request_id]["result"], _reference(op, data, args))


def test_csv_through_the_api(api: ApiStack, tmp_path: Path) -> None:
    rows = [[float(i), float(i) + 1, 2.5] for i in range(150)]
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "results.ndjson"

    run = ingest(str(source), "--op", "max", "--via-api", api.base_url, "--id-prefix", "csv",
                 "--results", str(out), "--no-progress")

    assert run.returncode == 0, run.stderr
    results = _results(out)
    assert {rid: doc["result"] for rid, doc in results.items()} == {
        f"csv-{n}": max(row) for n, row in enumerate(rows, start=1)}


def test_npy_goes_as_npy_blocks_and_bad_rows_are_named(api: ApiStack, tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    matrices = rng.normal(size=(450, 2 * 2 + 2 * 2))
    matrices[123, 5] = np.nan  # row 124: refused by the API, the rest goes on
    source = tmp_path / "pairs.npy"
    np.save(source, matrices)
    out = tmp_path / "results.ndjson"

    # --window 100: blocks of 100 rows, so ids name the block's first row and the offset.
    run = ingest(str(source), "--op", "matmul", "--args", '{"m": 2, "k": 2, "n": 2}',
                 "--via-api", api.base_url, "--id-prefix", "np", "--window", "100",
                 "--results", str(out))

    assert run.returncode == 1, run.stderr
    assert "row 124: data: row contains NaN or Infinity" in run.stderr
    assert "sent 449 requests" in run.stderr and "received 449 of 449" in run.stderr
    results = _results(out)
    expected = {}
    for index, row in enumerate(matrices):
        number = index + 1
        if number == 124:
            continue
        first = (index // 100) * 100 + 1
        expected[f"np-{first}-{number - first}"] = row[:4].reshape(2, 2) @ row[4:].reshape(2, 2)
    assert set(results) == set(expected)
    for request_id, want in expected.items():
        _assert_close(results[request_id]["result"], want)


def test_an_api_that_is_not_there_is_one_line_and_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "requests.ndjson"
    source.write_text('{"op": "sum", "data": [1]}\n')
    url = f"http://127.0.0.1:{free_port()}"

    run = ingest(str(source), "--via-api", url, "--results", str(tmp_path / "out"))

    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"calcstream ingest: cannot reach the calcstream API at {url}:"
                                 " connection refused"), run.stderr
