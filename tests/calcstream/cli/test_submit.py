"""``calcstream submit``: one request, its result printed, the status in the exit code."""

from __future__ import annotations

import orjson

from tests.kafka import Deployment
from tests.stack import calcstream


def test_ok_prints_the_value(stack: Deployment) -> None:
    run = calcstream("submit", "sum_of_squares", "1", "2", "-3", dep=stack)

    assert run.returncode == 0, run.stderr
    assert run.stdout == "14.0\n"


def test_json_prints_the_whole_result(stack: Deployment) -> None:
    run = calcstream("submit", "matmul", "1", "2", "3", "4", "5", "6", "7", "8",
                     "--args", '{"m": 2, "k": 2, "n": 2}', "--id", "sub-mm", "--json", dep=stack)

    assert run.returncode == 0, run.stderr
    doc = orjson.loads(run.stdout)
    assert doc["id"] == "sub-mm" and doc["status"] == "ok"
    assert doc["result"] == [[19.0, 22.0], [43.0, 50.0]]


def test_error_result_exits_1(stack: Deployment) -> None:
    run = calcstream("submit", "inv", "1", "2", "2", "4", dep=stack)

    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith("error: singular_matrix:")


def test_expired_result_exits_1(stack: Deployment) -> None:
    run = calcstream("submit", "sum", "1", "2", "--deadline", "-1", "--json", dep=stack)

    assert run.returncode == 1
    assert orjson.loads(run.stdout)["status"] == "expired"


def test_invalid_request_is_refused_before_sending(stack: Deployment) -> None:
    run = calcstream("submit", "dot", "1", "2", "3", dep=stack)

    assert run.returncode == 2
    assert run.stderr.count("\n") == 1
    assert "even count" in run.stderr


def test_no_result_in_time_exits_3(idle: Deployment) -> None:
    run = calcstream("submit", "sum", "1", "--timeout", "0.5", dep=idle)

    assert run.returncode == 3
    assert run.stderr.count("\n") == 1
    assert "no result for" in run.stderr
