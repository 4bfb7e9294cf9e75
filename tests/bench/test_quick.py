"""A thin slice of the bench on the real broker: the harness yields well-formed figures.

No timing assertions: the machine is shared and these runs are tiny. Its HTTP client (aiohttp)
is a dev dependency too, so the suite always runs it; uvicorn, aiokafka and NumPy come with the
product.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient

from bench.harness import loadgen, payloads, procs
from bench.harness.config import Plan
from bench.harness.procs import Child, uvicorn_child
from bench.report import render
from bench.tools import broker_bundling, fetch_cost
from bench.workloads import bulk, echo_rate, worker_path
from core.admin import wait_for_broker
from core.kafka import EmbeddedKafka
from core.net import free_port
from tests.kafka import create_topics, produce, unique
from tests.processes import ended

FAST_GROUP = {"CALCSTREAM_SESSION_TIMEOUT_MS": "2000", "CALCSTREAM_HEARTBEAT_INTERVAL_MS": "500",
              "CALCSTREAM_LOG_LEVEL": "WARNING"}


async def test_worker_path_counts_every_result_and_the_echo(kafka_bootstrap: str,
                                                            tmp_path: Path) -> None:
    figure = await worker_path.measure(kafka_bootstrap, FAST_GROUP, tmp_path, 2_000)

    assert figure["results"] == figure["unique_ids"] == 2_000
    assert figure["wrong"] == 0
    assert figure["echo_records"] == 2_000
    assert figure["worker_per_s"] > 0 and figure["echo_per_s"] > 0
    assert figure["worker_vs_echo"] == pytest.approx(
        figure["worker_per_s"] / figure["echo_per_s"])


async def test_the_raw_echo_at_a_fixed_rate_checks_every_record(kafka_bootstrap: str,
                                                                tmp_path: Path) -> None:
    figure = await echo_rate.measure(kafka_bootstrap, FAST_GROUP, tmp_path, payloads.w1_pool(),
                                     rate=200, seconds=1.0, warmup_s=0.5)

    assert figure["offered"] == figure["answered"] == 200
    assert figure["wrong"] == figure["failed"] == figure["unacknowledged"] == 0
    assert 0 < figure["latency_ms"]["p50"] <= figure["latency_ms"]["p99"]
    assert len(figure["latencies_ms"]) == 200
    # The warm-up's 100 records went through too, counted apart.
    assert figure["warmup_not_right"] == 0 and figure["warmup_latency_ms"]["n"] == 100


async def test_the_raw_bulk_round_trip_reads_back_every_record(kafka_bootstrap: str) -> None:
    figure = await bulk.raw_round_trip(kafka_bootstrap, FAST_GROUP, {}, chunk=500, items=2_000)

    assert figure["items"] == figure["ok"] == 2_000 and figure["per_post"] == 500
    assert figure["wrong"] == figure["dropped"] == 0 and figure["complete"]
    assert figure["ok_per_s"] > 0 and figure["cpu_us_per_item"]["client"] > 0


@pytest.fixture
def inline_peer(tmp_path: Path) -> Iterator[tuple[Child, int]]:
    port = free_port()
    child = uvicorn_child("inline", "bench.peers.inline:app", port, tmp_path).start()
    try:
        child.wait_port(port, 30)
        yield child, port
    finally:
        child.stop()


async def test_fixed_rate_checks_every_answer_of_a_peer(inline_peer: tuple[Child, int]) -> None:
    _, port = inline_peer
    pool = payloads.w1_pool()
    result = await loadgen.fixed_rate(f"http://127.0.0.1:{port}/compute", pool, rate=200,
                                      seconds=1.0, status=200,
                                      check=loadgen.result_check(pool))

    assert result.offered == 200
    assert len(result.latencies_ms) == 200
    assert result.wrong == result.failed == 0
    assert result.statuses == {200: 200}


async def test_probe_samples_on_its_timer(inline_peer: tuple[Child, int]) -> None:
    _, port = inline_peer
    probe = loadgen.Probe(f"http://127.0.0.1:{port}/healthz")
    await probe.run(asyncio.Event(), limit_s=0.5)

    assert 20 <= len(probe.samples) <= 51
    assert probe.failures == 0


def test_report_renders_figures_and_targets() -> None:
    runs = [{"worker_per_s": 60_000.0 + i, "echo_per_s": 120_000.0, "worker_vs_echo": 0.5,
             "wrong": 0} for i in range(3)]
    # Ratios are taken round by round: 40/20, 60/20, 90/30.
    w2 = {"inline": [{"ok_per_s": v} for v in (20.0, 20.0, 30.0)],
          "calcstream": [{"ok_per_s": v, "probe_load_ms": {"p99": 30.0}}
                         for v in (40.0, 60.0, 90.0)],
          "calcstream_binary": [{"ok_per_s": 100.0}]}
    # calcstream's fixed-rate latency over the raw echo's, round by round: 30/10 and 40/10.
    fixed = {"calcstream": [{"latency_ms": {"p50": v, "p99": 4 * v}} for v in (30.0, 40.0)],
             "raw_echo": [{"latency_ms": {"p50": 10.0, "p99": 40.0}} for _ in range(2)]}
    results = {"plan": Plan.full().__dict__, "started": "s", "finished": "f",
               "worker": {"calcstream": runs}, "w2": w2, "fixed": fixed}

    text = render.render(results, [])

    # A miss points at the finding that explains it.
    assert "| Worker path vs raw echo | ≥ 0.8 | 0.500 (0.500–0.500) | **no** (FINDINGS 5) |" \
        in text
    assert "| W1 bulk, JSON | ≥ 15,000 items/s | — | not measured |" in text
    assert ("| W2 `?wait=30`, JSON bodies, vs inline, same round | ≥ 1.5× | 3.00 (2.00–3.00) "
            "| yes |") in text
    assert ("| W2, binary body and `.npy` result, vs inline with JSON, same round | ≥ 3× | "
            "5.00 | yes |") in text
    assert "| `/healthz` p99 during W2 (JSON bodies) | ≤ 25 ms | 30.0 (30.0–30.0) | **no**" \
        in text
    assert "own contract) | 100.0 | 5.00× |" in text
    assert ("| 1,000 req/s offered, p50 vs a raw echo's at the same rate, same round | ≤ 2× | "
            "3.50 (3.00–4.00) | **no** (FINDINGS 26) |") in text


def test_bundling_reads_back_every_record_and_charges_the_broker() -> None:
    with EmbeddedKafka(free_port()) as broker:
        asyncio.run(wait_for_broker(broker.bootstrap_servers))
        assert broker.pid is not None
        cost = broker_bundling.measure(broker.bootstrap_servers, broker.pid, 8_000, 4, 4_000,
                                       "zstd")

    # measure() raises unless all 1,000 records come back. 32 MB cost the broker far more
    # than one tick of its CPU clock (10 ms).
    assert cost.produce_us + cost.consume_us > 0
    assert cost.produce_per_s > 0 and cost.consume_per_s > 0


async def test_the_lean_fetch_loop_reads_committed_records_only(kafka_bootstrap: str) -> None:
    # What fetch_cost's bare loop measures must be a reader's whole work: every committed
    # record, in order, and nothing of an aborted transaction or of its markers.
    topic = unique("lean")
    await create_topics(kafka_bootstrap, [topic], 1)
    transactional = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                     transactional_id=f"{topic}-tx")
    await transactional.start()
    try:
        async with transactional.transaction():
            await transactional.send_and_wait(topic, b"committed-1", partition=0)
        await transactional.begin_transaction()
        await transactional.send_and_wait(topic, b"aborted", partition=0)
        await transactional.abort_transaction()
        await produce(kafka_bootstrap, topic, [(None, b"plain")])
        async with transactional.transaction():
            await transactional.send_and_wait(topic, b"committed-2", partition=0)
    finally:
        await transactional.stop()
    end = await fetch_cost.end_offsets(kafka_bootstrap, [TopicPartition(topic, 0)])
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap)
    await client.bootstrap()
    try:
        client.add_topic(topic)
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, 0))
        positions, values = {0: 0}, []
        async with asyncio.timeout(30):
            while positions[0] < end[TopicPartition(topic, 0)]:
                values += await fetch_cost.fetch_values(client, leader, topic, positions, 100)
    finally:
        await client.close()

    assert values == [b"committed-1", b"plain", b"committed-2"]


SPINNER = """
import os, sys, time
stop = sys.argv[1]
if os.fork() == 0:  # the child spins until told to stop, like a prefork pool's busy worker
    while not os.path.exists(stop):
        pass
time.sleep(600)
"""


async def test_until_idle_waits_for_a_busy_descendant(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", SPINNER, str(stop),
                                                  start_new_session=True)
    try:
        waiting = asyncio.create_task(procs.until_idle([parent.pid], window_s=0.5, limit_s=60))
        async with asyncio.timeout(30):
            # The child's CPU counts; nothing announces it but the counter itself.
            while procs.tree_cpu_seconds(parent.pid) < 0.5:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert not waiting.done()
        stop.touch()
        took = await asyncio.wait_for(waiting, 30)
        assert took < 60
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        await parent.wait()


STARTER = """
import time
from bench.harness.procs import Child
child = Child("sleeper", ["sleep", "600"]).start()
print(child.pid, flush=True)
time.sleep(600)
"""


async def test_a_script_stopped_by_sigterm_stops_the_servers_it_started() -> None:
    # Such as a tool run under `timeout`: Python's default for SIGTERM runs no exit hooks,
    # and the children live in sessions of their own.
    script = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTER, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(procs.ROOT)})
    assert script.stdout is not None
    child = int(await asyncio.wait_for(script.stdout.readline(), 30))
    assert not ended(child)
    script.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(script.wait(), 30) == 143
    async with asyncio.timeout(10):
        while not ended(child):  # noqa: ASYNC110 - nothing announces a stranger's exit
            await asyncio.sleep(0.05)
