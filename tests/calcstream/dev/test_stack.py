"""``calcstream dev`` (what ``make run`` starts): up and answering at once, down cleanly on the
terminal's Ctrl-C or hang-up, nothing left running when the supervisor is killed, and what it
computed still there after a restart on the same data; with ``--brokers 3``, on a cluster
whose topics have three replicas."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from calcstream.dev.stack import STOP_SIGNALS, interrupt_on_stop, run_stoppable
from core.admin import wait_for_group
from core.net import free_port, port_open
from tests.kafka import describe_partitions
from tests.processes import ended
from tests.waiting import until


class Dev:
    """``calcstream dev`` in a session of its own, as a terminal runs a foreground job."""

    def __init__(self, tmp: Path, data_dir: Path, name: str, *extra: str) -> None:
        self.broker, self.api, self.metrics = free_port(), free_port(), free_port()
        self.log = tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALCSTREAM_")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "calcstream.cli", "dev", "--broker-port", str(self.broker),
                 "--port", str(self.api), "--metrics-port", str(self.metrics),
                 "--data-dir", str(data_dir), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_up(self, timeout: float = 120) -> None:
        self.wait_for("calcstream dev is up", timeout)

    def wait_for(self, line: str, timeout: float = 120) -> None:
        """Until ``line`` is in the log (the command still running)."""
        deadline = time.monotonic() + timeout
        while line not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.05)

    def ctrl_c(self) -> int:
        """SIGINT to the whole foreground process group; the exit code."""
        return self.signal(signal.SIGINT)

    def signal(self, signum: int) -> int:
        """``signum`` to the whole foreground process group; the exit code."""
        os.killpg(self.proc.pid, signum)
        return self.proc.wait(60)

    def nothing_left(self) -> None:
        """Neither the broker, the API nor the worker still listens: the stack is gone."""
        for port in (self.broker, self.api, self.metrics):
            assert not port_open("127.0.0.1", port), (port, self.text()[-3000:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()



@pytest.fixture
def stop_signals_restored() -> Iterator[None]:
    """The stop signals as ``calcstream dev`` sets them while it starts; pytest's afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    interrupt_on_stop()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_stop_while_a_start_up_step_runs_cancels_it_where_it_awaits(
        stop_signals_restored: None) -> None:
    # A KeyboardInterrupt raised wherever the signal lands can land inside the event loop's
    # own code and strand the step: the loop closes with it pending ("Task was destroyed but it
    # is pending!") and its clean-up runs later, with no loop. The step goes on to its next
    # await instead, is cancelled there, and unwinds while its loop still runs.
    seen: list[str] = []

    async def step() -> None:
        loop = asyncio.get_running_loop()
        os.kill(os.getpid(), signal.SIGHUP)  # its handler runs before the next line
        seen.append("went on")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled at its await")
            raise
        finally:
            seen.append("loop closed" if loop.is_closed() else "loop running")

    with pytest.raises(KeyboardInterrupt):
        run_stoppable(step())

    assert seen == ["went on", "cancelled at its await", "loop running"]
    assert all(signal.getsignal(s) is signal.default_int_handler for s in STOP_SIGNALS)


def test_a_stop_after_a_start_up_step_last_awaited_still_stops(
        stop_signals_restored: None) -> None:
    async def step() -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        return "done"

    with pytest.raises(KeyboardInterrupt):
        run_stoppable(step())


def test_a_stop_a_start_up_step_swallows_still_stops(stop_signals_restored: None) -> None:
    async def step() -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "went on"
        return "not stopped"

    with pytest.raises(KeyboardInterrupt):
        run_stoppable(step())


def test_dev_stack_serves_stops_on_ctrl_c_and_keeps_its_results(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    first = Dev(tmp_path, data_dir, "first")
    try:
        first.wait_until_up()
        # Up means every request partition has its owner: nothing waits for a rebalance.
        asyncio.run(wait_for_group(f"127.0.0.1:{first.broker}", "calcstream-workers", 1,
                                   timeout=1, topic="calc.requests"))
        response = httpx.post(f"http://127.0.0.1:{first.api}/v1/calculations?wait=10",
                              json={"id": "kept-1", "op": "sum_of_squares", "data": [1, 2, 3]},
                              timeout=15)
        assert response.status_code == 200, response.text
        assert response.json()["result"] == 14.0
        scraped = httpx.get(f"http://127.0.0.1:{first.metrics}/metrics", timeout=5)
        assert "calcstream_worker_records_total" in scraped.text
        assert first.ctrl_c() == 0, first.text()
    finally:
        first.close()
    log = first.text()
    assert "shut down gracefully" in log
    first.nothing_left()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert "Connection refused" not in log, log[-3000:]

    second = Dev(tmp_path, data_dir, "second")
    try:
        second.wait_until_up()
        kept = httpx.get(f"http://127.0.0.1:{second.api}/v1/calculations/kept-1", timeout=5)
        assert kept.status_code == 200, kept.text
        assert kept.json()["status"] == "ok" and kept.json()["result"] == 14.0
        # The terminal closing (SIGHUP) stops the stack as Ctrl-C does, leaving nothing behind.
        assert second.signal(signal.SIGHUP) == 0, second.text()
    finally:
        second.close()
    assert "formatted Kafka storage" not in second.text(), "the data directory was kept"
    assert "shut down gracefully" in second.text()
    first.nothing_left()
    second.nothing_left()


def test_a_hang_up_while_the_stack_starts_stops_what_has_started(tmp_path: Path) -> None:
    dev = Dev(tmp_path, tmp_path / "kafka", "early")
    try:
        dev.wait_for("answering on")  # the broker is up; the services are starting
        assert dev.signal(signal.SIGHUP) in (0, 130), dev.text()
    finally:
        dev.close()
    assert "shut down gracefully" in dev.text() and "Traceback" not in dev.text(), dev.text()
    dev.nothing_left()


def test_a_killed_supervisor_takes_the_stack_with_it(tmp_path: Path) -> None:
    # SIGKILL (the OOM killer, a CI job cancelled) ends the supervisor alone, before it can stop
    # anything: the broker and the services, in sessions of their own, used to run on.
    dev = Dev(tmp_path, tmp_path / "kafka", "killed")
    try:
        dev.wait_until_up()
        pids = [int(pid) for pid in re.findall(r"\bpid (\d+)", dev.text())]
        assert len(pids) == 3, dev.text()  # the broker, the worker and the API
        answered = httpx.post(f"http://127.0.0.1:{dev.api}/v1/calculations?wait=10",
                              json={"op": "sum_of_squares", "data": [1, 2, 3]}, timeout=15)
        assert answered.json()["result"] == 14.0, answered.text
        os.kill(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait()
        asyncio.run(until(lambda: all(map(ended, pids)), 60, "the stack's exit"))
    finally:
        dev.close()
    dev.nothing_left()
    # In the supervisor's order: the services stopped while the broker still answered.
    log = dev.text()
    assert "API shut down gracefully" in log, log[-3000:]
    assert re.search(r"worker \S+ shut down gracefully", log), log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_the_secure_stack_lets_each_user_do_its_part(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    dev = Dev(tmp_path, data_dir, "secure", "--secure")
    try:
        dev.wait_until_up()
        response = httpx.post(f"http://127.0.0.1:{dev.api}/v1/calculations?wait=10",
                              json={"id": "sec-1", "op": "sum", "data": [1, 2, 3]}, timeout=15)
        assert response.status_code == 200, response.text
        # An independent client (librdkafka) logs in as the cli user from cli.env.
        env = dict(line.split("=", 1) for line in
                   (tmp_path / "kafka-credentials" / "cli.env").read_text().splitlines())
        assert env["CALCSTREAM_SECURITY_PROTOCOL"] == "SASL_SSL"
        consumer = Consumer({
            "bootstrap.servers": env["CALCSTREAM_BOOTSTRAP_SERVERS"],
            "security.protocol": "SASL_SSL", "sasl.mechanism": env["CALCSTREAM_SASL_MECHANISM"],
            "sasl.username": env["CALCSTREAM_SASL_USERNAME"],
            "sasl.password": env["CALCSTREAM_SASL_PASSWORD"],
            "ssl.ca.location": env["CALCSTREAM_SSL_CAFILE"],
            "ssl.certificate.location": env["CALCSTREAM_SSL_CERTFILE"],
            "ssl.key.location": env["CALCSTREAM_SSL_KEYFILE"],
            "group.id": "unused", "enable.auto.commit": False})
        try:
            found = None
            deadline = time.monotonic() + 30
            consumer.assign([TopicPartition("calc.results", p, OFFSET_BEGINNING)
                             for p in range(4)])
            while found is None and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is not None and message.error() is None and message.key() == b"sec-1":
                    found = message.value()
            assert found is not None and b'"result":6.0' in found
        finally:
            consumer.close()
        assert dev.ctrl_c() == 0, dev.text()
    finally:
        dev.close()
    log = dev.text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    passwords = (tmp_path / "kafka-credentials" / "users.json").read_text()
    assert env["CALCSTREAM_SASL_PASSWORD"] in passwords
    for password in json.loads(passwords)["users"].values():
        assert password not in log


def _consecutive_free_ports(count: int) -> int:
    """A port such that it and the ``count - 1`` after it are free, below the kernel's
    ephemeral range: a port in that range can be taken by any outgoing connection (the nodes'
    own, to each other) between this check and the node binding it."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    ephemeral_low = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    rng = random.Random()
    while True:
        base = rng.randrange(10_000, ephemeral_low - count)
        if all(_bindable(base + i) for i in range(count)):
            return base


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.timeout(300)  # three JVMs start side by side
def test_dev_with_three_brokers_runs_a_cluster_with_replicated_topics(tmp_path: Path) -> None:
    base = _consecutive_free_ports(3)
    dev = Dev(tmp_path, tmp_path / "kafka-3", "cluster", "--brokers", "3",
              "--broker-port", str(base))
    try:
        dev.wait_until_up(timeout=180)
        response = httpx.post(f"http://127.0.0.1:{dev.api}/v1/calculations?wait=10",
                              json={"id": "rf-1", "op": "sum", "data": [1, 2, 3]}, timeout=15)
        assert response.status_code == 200, response.text
        bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        for topic in ("calc.requests", "calc.results", "calc.dlq"):
            partitions = asyncio.run(describe_partitions(bootstrap, topic))
            assert partitions and all(len(p.replicas) == 3 for p in partitions.values())
        assert dev.ctrl_c() == 0, dev.text()
    finally:
        dev.close()
    log = dev.text()
    assert "cluster   3 nodes, topics replicated 3 times, min.insync.replicas 2" in log
    assert f"broker    {bootstrap}" in log
    assert "shut down gracefully" in log
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
