"""Kafka over SASL_SSL with ACLs: the embedded node started with a CA and certificates made
here, SCRAM and PLAIN users, and ACLs that let the worker and the API do their jobs and
nothing more. A principal without ACLs, a wrong password or an untrusted certificate is
refused, and the services say so in one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.attempts import ensure_journal_topic
from consumer.settings import WorkerSettings
from core.admin import BrokerRefused, ensure_topics, wait_for_broker
from core.kafka.secure import (
    Certificates,
    User,
    client_settings,
    grant,
    make_certificates,
    secure_node,
    service_acls,
)
from core.net import free_port
from core.settings import BrokerSettings
from producer_api.settings import ApiSettings
from schemas.topics import reply_group_of
from tests.producer_api.conftest import TEST_LIMITS, ApiStack

ADMIN = User("admin", "admin-Secret-1")
WORKER = User("worker", "worker-Secret-2")
API = User("api", "api-Secret-3")
NOBODY = User("nobody", "nobody-Secret-4")
TOPICS = {"requests_topic": "sec.requests", "results_topic": "sec.results",
          "dlq_topic": "sec.dlq"}
GROUP = "sec-workers"


@dataclass
class Secure:
    bootstrap: str
    certs: Certificates

    def settings(self, user: User, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
        return {**client_settings(self.bootstrap, self.certs, user, mechanism), **TOPICS}

    def env(self, user: User) -> dict[str, str]:
        """CALCSTREAM_* variables for a service process logging in as ``user``."""
        s = self.settings(user)
        env = {f"CALCSTREAM_{k.upper()}": str(v) for k, v in s.items()}
        return {**os.environ, **env, "CALCSTREAM_GROUP_ID": GROUP,
                "CALCSTREAM_METRICS_PORT": "0", "CALCSTREAM_STARTUP_TIMEOUT_S": "10"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    directory = tmp_path_factory.mktemp("secure-kafka")
    certs = make_certificates(directory / "tls")
    node = secure_node(free_port(), certs, ADMIN, [WORKER, API, NOBODY],
                       data_dir=directory / "data")
    with node:
        found = Secure(node.bootstrap_servers, certs)
        admin = BrokerSettings(**found.settings(ADMIN))
        journal = f"{TOPICS['requests_topic']}.attempts"

        async def prepare() -> None:
            await ensure_topics(admin)
            await ensure_journal_topic(admin, journal, 4, 1)
            await grant(admin, service_acls(
                [*TOPICS.values(), journal], TOPICS["requests_topic"], TOPICS["results_topic"],
                TOPICS["dlq_topic"], GROUP, WORKER.name, API.name, journal,
                reply_group_of(TOPICS["results_topic"])))

        asyncio.run(prepare())
        yield found


async def test_the_services_work_with_exactly_their_acls(secure: Secure) -> None:
    api = ApiSettings(**secure.settings(API), **TEST_LIMITS, create_topics=False)
    worker = WorkerSettings(**secure.settings(WORKER, "SCRAM-SHA-256"), group_id=GROUP,
                            metrics_port=0, create_topics=False, session_timeout_ms=2000,
                            heartbeat_interval_ms=500)
    stack = ApiStack(api, worker)
    await asyncio.to_thread(stack.start)
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
            answer = await http.post("/v1/calculations", params={"wait": 20},
                                     json={"op": "sum", "data": [1.0, 2.0, 3.0]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == 6.0
    finally:
        await asyncio.to_thread(stack.stop)


async def test_each_principal_is_held_to_its_acls(secure: Secure) -> None:
    # The worker may not write requests, the API may not read them: least privilege.
    worker = BrokerSettings(**secure.settings(WORKER))
    producer = AIOKafkaProducer(**worker.producer_options())
    await producer.start()
    try:
        with pytest.raises(KafkaError, match="Authorization"):
            await producer.send_and_wait(TOPICS["requests_topic"], b"{}", key=b"x")
    finally:
        await producer.stop()
    api = BrokerSettings(**secure.settings(API, "PLAIN"))
    consumer = AIOKafkaConsumer(TOPICS["requests_topic"], **api.connection_options(),
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        with pytest.raises(KafkaError, match="Authorization"):
            await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


async def test_a_wrong_password_or_certificate_is_refused_at_once(secure: Secure,
                                                                 tmp_path: Path) -> None:
    wrong = BrokerSettings(**{**secure.settings(API), "sasl_password": "not-it"})
    with pytest.raises(BrokerRefused, match="refused the login of 'api'"):
        await wait_for_broker(wrong, timeout=30)
    strange = make_certificates(tmp_path / "other")
    untrusted = BrokerSettings(**{**secure.settings(API), "ssl_cafile": strange.ca})
    with pytest.raises(BrokerRefused, match="TLS with the broker"):
        await wait_for_broker(untrusted, timeout=30)


@pytest.mark.parametrize("service", ["consumer", "producer_api"])
@pytest.mark.parametrize("create", ["true", "false"])
def test_a_principal_without_acls_is_refused_in_one_line(secure: Secure, service: str,
                                                         create: str) -> None:
    env = {**secure.env(NOBODY), "CALCSTREAM_CREATE_TOPICS": create}
    done = subprocess.run([sys.executable, "-m", service], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "refused" in done.stderr and "'nobody'" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert NOBODY.password not in done.stderr  # the start-up line masks it
