"""The embedded Apache Kafka: what it keeps across a crash, what it refuses to delete, what a
newcomer hears when Java or Maven is missing or the jars are fetched for the first time, and
``calcstream broker`` stopping it when its terminal closes."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.kafka import EmbeddedKafka, KafkaStartError, kafka_version, node, wipe_data_dir
from core.kafka.jars import java_executable
from core.net import free_port, port_open
from tests.kafka import create_topics

CALCSTREAM = [sys.executable, "-m", "calcstream.cli"]


async def _produce_and_commit(bootstrap: str, topic: str, n: int, committed: int) -> None:
    await create_topics(bootstrap, [topic], 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        acks = [await producer.send(topic, f"r{i}".encode(), partition=0) for i in range(n)]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="kept",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): committed})
    finally:
        await consumer.stop()


async def _read_back(bootstrap: str, topic: str, n: int) -> tuple[list[bytes], int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="kept",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        committed = await consumer.committed(tp)
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        async with asyncio.timeout(20):
            while len(values) < n:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    values.extend(r.value for r in records)
        return values, committed
    finally:
        await consumer.stop()


def test_records_and_committed_offsets_survive_a_sigkill_and_a_restart(tmp_path: Path) -> None:
    port, data_dir = free_port(), tmp_path / "node"
    first = EmbeddedKafka(port, data_dir=data_dir)
    first.start()
    try:
        asyncio.run(_produce_and_commit(first.bootstrap_servers, "kept", 100, 40))
    finally:
        first.kill()
    # Another process on the same data (and another controller port): the same cluster.
    second = EmbeddedKafka(port, data_dir=data_dir)
    with second:
        values, committed = asyncio.run(_read_back(second.bootstrap_servers, "kept", 100))
    assert values == [f"r{i}".encode() for i in range(100)]
    assert committed == 40
    log = second.log_path.read_text()
    assert f"Kafka version: {kafka_version()}" in log, "the broker's own log is written"
    assert (data_dir / "log" / "meta.properties").exists()


def test_a_second_node_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with EmbeddedKafka(free_port(), data_dir=tmp_path / "a") as running, \
            pytest.raises(KafkaStartError, match="already in use"):
        EmbeddedKafka(running.port, data_dir=tmp_path / "b").start()


def test_more_jvm_options_reach_the_node_and_temporary_data_goes_without_a_shutdown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(node.JVM_OPTIONS_ENV, "-Xmx768m '-Dcalcstream.note=two words'")
    broker = EmbeddedKafka(free_port())
    broker.start()
    if broker.archiving:  # the first start on this machine: its exit writes the class archive
        broker.close()
        broker = EmbeddedKafka(free_port())
        broker.start()
    pid, data_dir = broker.pid, broker.data_dir
    try:
        assert not broker.archiving and pid is not None
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"-XX:TieredStopAtLevel=1" in argv  # the default JIT: the client compiler alone
        # After the defaults, so a later -Xmx (or -XX:TieredStopAtLevel=4) wins.
        assert argv.index(b"-Xmx768m") > argv.index(b"-Xmx1g")
        assert b"-Dcalcstream.note=two words" in argv
    except BaseException:
        broker.close()
        raise

    def controlled_shutdown(*args: object) -> None:
        raise AssertionError("data about to be deleted needs no controlled shutdown")
    monkeypatch.setattr(EmbeddedKafka, "stop", controlled_shutdown)
    broker.close()
    assert not Path(f"/proc/{pid}").exists() and not data_dir.exists()


def test_only_a_nodes_own_data_directory_is_wiped(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(KafkaStartError, match="not an embedded Kafka"):
        wipe_data_dir(foreign)
    with pytest.raises(KafkaStartError, match="not an embedded Kafka's"):
        EmbeddedKafka(free_port(), data_dir=foreign).start()
    assert (foreign / "thesis.tex").exists()

    ours = tmp_path / "ours"
    node = EmbeddedKafka(free_port(), data_dir=ours)
    node.start()
    node.stop()
    node.wipe()
    assert not ours.exists()


def _broker_fetch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CALCSTREAM, "broker", "--fetch"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, check=False)


def test_no_java_is_one_line_naming_what_to_install_and_the_alternatives(
        tmp_path: Path) -> None:
    run = _broker_fetch({"JAVA_HOME": str(tmp_path / "no-jdk")})
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "Java 17 or newer" in line and "apt-get install openjdk-17-jre-headless" in line
    assert "CALCSTREAM_BOOTSTRAP_SERVERS" in line and "docker compose" in line


def test_an_old_java_is_named_with_its_version(tmp_path: Path) -> None:
    java = tmp_path / "jdk8" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_392"\' >&2\n')
    java.chmod(0o755)
    run = _broker_fetch({"JAVA_HOME": str(java.parents[1])})
    assert run.returncode == 2
    assert "is Java 8" in run.stderr and "JAVA_HOME" in run.stderr


def test_no_maven_is_one_line_when_the_jars_are_not_fetched_yet(tmp_path: Path) -> None:
    java_home = Path(java_executable()).resolve().parents[1]
    run = _broker_fetch({"JAVA_HOME": str(java_home), "PATH": str(tmp_path),
                         "CALCSTREAM_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "no `mvn` was found" in line and "apt-get install maven" in line
    assert "CALCSTREAM_BOOTSTRAP_SERVERS" in line


def test_the_first_run_says_it_fetches_and_later_runs_fetch_nothing(tmp_path: Path) -> None:
    cache = {"CALCSTREAM_CACHE_DIR": str(tmp_path / "cache")}
    first = _broker_fetch(cache)
    assert first.returncode == 0, first.stderr
    assert f"fetching Apache Kafka {kafka_version()} through Maven" in first.stderr
    assert "jars" in first.stderr and "ready" in first.stderr
    (installed,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in installed.iterdir()) == ["classpath.txt", "libs"]
    assert any(p.name.startswith("kafka_2.13-") for p in (installed / "libs").iterdir())

    again = _broker_fetch(cache)
    assert again.returncode == 0 and again.stderr == "", again.stderr


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 encodes as "-" in URL-safe base64: StorageTool would read "-t -..." as no value.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(node.uuid, "uuid4", lambda: next(drawn))
    cluster_id = node.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=")
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_calcstream_broker_stops_the_broker_when_its_terminal_closes(tmp_path: Path) -> None:
    # SIGHUP used to end the command alone, leaving the broker (its own session) running.
    port = free_port()
    log = tmp_path / "broker.out"
    with log.open("wb") as out:
        proc = subprocess.Popen([*CALCSTREAM, "broker", "--port", str(port), "--data-dir",
                                 str(tmp_path / "data")], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while f"on 127.0.0.1:{port}" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGHUP)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopping the broker (controlled shutdown)" in log.read_text()
    assert not port_open("127.0.0.1", port), "the broker still listens"


def test_an_interrupted_start_stops_the_jvm_it_launched(tmp_path: Path) -> None:
    # Ctrl-C (or a stop signal made one) while the node starts: the JVM, in a session of its
    # own, must not outlive the interrupted start.
    launched: list[int] = []

    def interrupted() -> bool:
        assert node.pid is not None
        launched.append(node.pid)
        raise KeyboardInterrupt

    node = EmbeddedKafka(free_port(), data_dir=tmp_path / "data", probe=interrupted)
    with pytest.raises(KeyboardInterrupt):
        node.start()
    assert launched and not node.running()
    with pytest.raises(ProcessLookupError):
        os.kill(launched[0], 0)
