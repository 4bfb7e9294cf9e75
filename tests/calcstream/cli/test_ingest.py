"""``calcstream ingest`` against the real broker and a real worker process."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from calcstream.cli.ingest import IngestOptions, ingest
from calcstream.cli.sources import open_source
from consumer import ops
from tests.kafka import Deployment
from tests.stack import calcstream


def _reference(op: str, data: list[float], args: dict[str, Any]) -> Any:
    spec = ops.get(op)
    return spec.reference(np.asarray(data, dtype=np.float64), spec.parse(len(data), args))


def _results(path: Path) -> dict[str, dict[str, Any]]:
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    by_id = {doc["id"]: doc for doc in docs}
    assert len(by_id) == len(docs), "a result was written twice"
    return by_id


def _assert_close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                               rtol=1e-9, atol=1e-9)


def test_ndjson_results_match_by_id_and_bad_lines_are_reported(
    stack: Deployment, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    lines: list[tuple[bytes, str | None, tuple[str, list[float], dict[str, Any]] | None]] = []
    for i in range(400):
        op = ("sum_of_squares", "mean", "var", "matmul")[i % 4]
        args: dict[str, Any] = {"ddof": 1} if op == "var" else {}
        if op == "matmul":
            args = {"m": 2, "k": 3, "n": 2}
            data = rng.normal(size=12).tolist()
        else:
            data = rng.normal(size=int(rng.integers(2, 30))).tolist()
        doc: dict[str, Any] = {"op": op, "data": data, "args": args}
        if i % 2:  # every other line has its own id; the rest get PREFIX-<line number>
            doc["id"] = f"nd-{i}"
        lines.append((orjson.dumps(doc), doc.get("id"), (op, data, args)))
    lines.insert(7, (b"{not json", None, None))
    requests = {rid or f"gen-{number}": request
                for number, (_, rid, request) in enumerate(lines, start=1) if request}
    source = tmp_path / "requests.ndjson"
    source.write_bytes(b"".join(line + b"\n" for line, _, _ in lines))
    out = tmp_path / "results.ndjson"

    run = calcstream("ingest", str(source), "--results", str(out), "--id-prefix", "gen",
                     "--timeout", "30", dep=stack)

    assert run.returncode == 1, run.stderr  # the bad line is skipped and reported
    assert "line 8: not JSON" in run.stderr
    assert "received 400 of 400 results" in run.stderr and "0 missing" in run.stderr
    results = _results(out)
    assert set(results) == set(requests)
    for rid, (op, data, args) in requests.items():
        assert results[rid]["status"] == "ok", results[rid]
        _assert_close(results[rid]["result"], _reference(op, data, args))
    assert not (tmp_path / "results.ndjson.missing").exists()


def test_csv_rows_become_requests(stack: Deployment, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [rng.normal(size=int(rng.integers(3, 10))).round(6).tolist() for _ in range(200)]
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "c"])
        writer.writerows(rows)
    out = tmp_path / "results.ndjson"

    run = calcstream("ingest", str(source), "--op", "std", "--args", '{"ddof": 1}',
                     "--id-prefix", "row", "--results", str(out), dep=stack)

    assert run.returncode == 0, run.stderr
    results = _results(out)
    # Row ids are the CSV line numbers: the header is line 1.
    assert set(results) == {f"row-{n}" for n in range(2, len(rows) + 2)}
    for n, row in enumerate(rows, start=2):
        _assert_close(results[f"row-{n}"]["result"], np.std(row, ddof=1))


def test_npy_rows_go_as_binary_frames(stack: Deployment, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    matrices = rng.normal(size=(300, 2 * 3 + 3 * 2))
    source = tmp_path / "pairs.npy"
    np.save(source, matrices)
    out = tmp_path / "results.ndjson"

    run = calcstream("ingest", str(source), "--op", "matmul", "--args",
                     '{"m": 2, "k": 3, "n": 2}', "--id-prefix", "np", "--results", str(out),
                     dep=stack)

    assert run.returncode == 0, run.stderr
    results = _results(out)
    assert len(results) == len(matrices)
    for n, row in enumerate(matrices, start=1):
        _assert_close(results[f"np-{n}"]["result"], row[:6].reshape(2, 3) @ row[6:].reshape(3, 2))


def test_missing_results_are_listed(idle: Deployment, tmp_path: Path) -> None:
    source = tmp_path / "requests.ndjson"
    source.write_text("".join(f'{{"id": "lost-{i}", "op": "sum", "data": [{i}]}}\n'
                              for i in range(5)))
    out = tmp_path / "results.ndjson"

    run = calcstream("ingest", str(source), "--results", str(out), "--timeout", "0.5",
                     dep=idle)

    assert run.returncode == 1
    assert "received 0 of 5 results" in run.stderr and "5 missing" in run.stderr
    missing = (tmp_path / "results.ndjson.missing").read_text().split()
    assert missing == [f"lost-{i}" for i in range(5)]


async def test_window_bounds_unacknowledged_requests(idle: Deployment, tmp_path: Path) -> None:
    source = tmp_path / "many.csv"
    source.write_text("".join(f"{i},{i + 1}\n" for i in range(5000)))

    report = await ingest(idle.broker_settings(), open_source(source, op="sum"),
                          IngestOptions(window=64, progress=False))

    assert report.sent == 5000 and report.ok
    assert 1 <= report.peak_in_flight <= 64
