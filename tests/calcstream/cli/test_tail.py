"""``calcstream tail`` follows results (and dead letters) as a real worker publishes them."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

import orjson

from schemas.encoding import RESULT_BINARY, RESULT_TYPE_HEADER
from tests.kafka import Deployment, produce, request_json
from tests.stack import CALCSTREAM, calcstream, environment, worker_process


async def test_follow_filter_and_replay(deployment: Deployment, tmp_path: Path) -> None:
    records = [(f"s-{i}".encode(), request_json(f"s-{i}", "sum", [i, 1])) for i in range(5)]
    records += [(f"e-{i}".encode(), request_json(f"e-{i}", "inv", [1, 2, 2, 4])) for i in range(2)]
    matmul = request_json("m-1", "matmul", [1, 2, 3, 4, 5, 6, 7, 8],
                          args={"m": 2, "k": 2, "n": 2})
    records += [(b"m-1", matmul), (b"poison-1", b"{not json")]
    # As the API asks for every matmul: a binary result frame on the topic.
    binary = [(RESULT_TYPE_HEADER, RESULT_BINARY.encode())]
    records += [(b"m-2", matmul.replace(b'"m-1"', b'"m-2"'), binary)]
    with worker_process(deployment, tmp_path / "worker.log"):
        follow = await asyncio.create_subprocess_exec(
            CALCSTREAM, "tail", "--dlq", "--status", "error", "--limit", "4",
            env=environment(deployment), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert follow.stderr is not None
        ready = await asyncio.wait_for(follow.stderr.readline(), 20)
        assert ready.startswith(b"following "), ready
        await produce(deployment.bootstrap, deployment.topics.requests, records)
        out, _ = await asyncio.wait_for(follow.communicate(), 30)
        assert follow.returncode == 0

    lines = out.decode().splitlines()
    # 2 singular matrices and the poison record's error result, and its dead letter.
    assert Counter(line.split()[1] for line in lines) == {"error": 3, "dlq": 1}, lines
    assert sum("singular_matrix" in line for line in lines) == 2
    assert any("poison-1" in line and "decode" in line for line in lines if " dlq " in line)

    run = calcstream("tail", "--from-beginning", "--op", "sum", "--limit", "5", "--json",
                     dep=deployment, timeout=30)
    docs = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert {doc["id"] for doc in docs} == {f"s-{i}" for i in range(5)}
    assert {(doc["op"], doc["status"]) for doc in docs} == {("sum", "ok")}

    run = calcstream("tail", "--from-beginning", "--status", "ok", "--op", "matmul",
                     "--limit", "2", dep=deployment, timeout=30)
    lines = run.stdout.splitlines()
    assert sorted(line.split()[3] for line in lines) == ["m-1", "m-2"], lines
    assert all(" ok " in line and "[[19.0,22.0],[43.0,50.0]]" in line for line in lines)
    run = calcstream("tail", "--from-beginning", "--op", "matmul", "--limit", "2", "--json",
                     dep=deployment, timeout=30)
    docs = {doc["id"]: doc for doc in map(orjson.loads, run.stdout.splitlines())}
    assert docs["m-2"]["result"] == docs["m-1"]["result"] == [[19.0, 22.0], [43.0, 50.0]]
