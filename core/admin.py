"""Broker housekeeping: wait until it answers, create the topics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaConnectionError, KafkaError

from core.settings import BrokerSettings

logger = logging.getLogger(__name__)

_TOPIC_EXISTS = 36


class BrokerUnavailable(ConnectionError):
    """The broker did not answer in time."""


async def wait_for_broker(bootstrap_servers: str, timeout: float = 30.0) -> None:
    """Return once the broker answers a metadata request; ``BrokerUnavailable`` after timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.1)
    raise BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap_servers} within {timeout:g}s: {last}"
    )


async def ensure_topics(settings: BrokerSettings, partitions: int | None = None) -> list[str]:
    """Create whichever of the deployment's topics are missing; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in settings.topics.all() if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(t, partitions or settings.topic_partitions, settings.replication_factor)
                for t in missing
            ]
        )
        for topic, code, message in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise KafkaError(f"could not create topic {topic}: {code} {message}")
        logger.info("created topics %s", ", ".join(missing))
        return missing
    except KafkaConnectionError as exc:
        raise BrokerUnavailable(str(exc)) from exc
    finally:
        await admin.close()


async def wait_for_group(
    bootstrap_servers: str, group_id: str, members: int, timeout: float = 60.0,
    topic: str | None = None,
) -> None:
    """Return once ``group_id`` is Stable with at least ``members`` members (joined, assigned)
    and, given a ``topic``, its members own every partition of it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        wanted = set()
        if topic is not None:
            (described_topic,) = await admin.describe_topics([topic])
            wanted = {p["partition"] for p in described_topic["partitions"]}
        async with asyncio.timeout(timeout):
            while True:
                try:
                    (described,) = (await admin.describe_consumer_groups([group_id]))[0].groups
                except KafkaError as exc:
                    # A new cluster creates its offsets topic at the first group's request.
                    if not exc.retriable:
                        raise
                else:
                    _, _, state, _, _, joined = described
                    if state == "Stable" and len(joined) >= members and \
                            wanted <= _owned(joined, topic):
                        return
                await asyncio.sleep(0.2)  # noqa: ASYNC110 - group state has no push notification
    except TimeoutError:
        raise BrokerUnavailable(
            f"consumer group {group_id} did not reach {members} stable member(s) in {timeout:g}s"
        ) from None
    finally:
        await admin.close()


def _owned(members: Sequence[Any], topic: str | None) -> set[int]:
    """The partitions of ``topic`` the described members hold."""
    owned: set[int] = set()
    for member in members:
        assignment = member[4]
        if not assignment:
            continue
        for name, partitions in ConsumerProtocolMemberAssignment.decode(assignment).assignment:
            if name == topic:
                owned.update(partitions)
    return owned
