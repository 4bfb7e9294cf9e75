"""Broker housekeeping: wait until it answers, create the topics."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from core.settings import BrokerSettings

logger = logging.getLogger(__name__)

_TOPIC_EXISTS = 36
_NOT_AUTHORIZED = (29, 31)  # topic, cluster authorization failed


class BrokerUnavailable(ConnectionError):
    """The broker did not answer in time."""


Broker = str | BrokerSettings
"""Where a broker is: bootstrap servers alone (PLAINTEXT), or settings with its security."""


def connection(broker: Broker) -> dict[str, Any]:
    """Client keyword arguments for ``broker``."""
    if isinstance(broker, str):
        return {"bootstrap_servers": broker}
    return broker.connection_options()


async def wait_for_broker(broker: Broker, timeout: float = 30.0) -> None:
    """Return once the broker answers a metadata request; ``BrokerUnavailable`` after timeout
    (at once, saying so, when it refuses the credentials)."""
    bootstrap_servers = broker if isinstance(broker, str) else broker.bootstrap_servers
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not isinstance(broker, str) and broker.security_protocol != "PLAINTEXT":
            await _check_credentials(broker)
        admin = AIOKafkaAdminClient(**connection(broker), request_timeout_ms=2000)
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


class BrokerRefused(BrokerUnavailable):
    """The broker answered but refused the credentials, the certificate or an operation (no
    ACL allows it): retrying will not help."""


AUTHORIZATION_ERRORS = (TopicAuthorizationFailedError, GroupAuthorizationFailedError,
                        ClusterAuthorizationFailedError)
"""What Kafka answers an operation no ACL allows."""


def refusal(exc: BaseException, settings: BrokerSettings) -> BrokerRefused:
    """``BrokerRefused`` for an authorization error, naming the principal."""
    who = f"user {settings.sasl_username!r}" if settings.sasl_username else "this client"
    return BrokerRefused(f"the broker at {settings.bootstrap_servers} refused {who}: "
                         f"{type(exc).__name__} ({exc}); an ACL must allow it "
                         "(docs/security.md, Kafka)")


async def _check_credentials(settings: BrokerSettings) -> None:
    """One connection with the settings' security, to tell a refused login or certificate
    (``BrokerRefused``, said once) from a broker not up yet (the client only logs those)."""
    options = settings.connection_options()
    options.pop("bootstrap_servers")
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=2000, **options)
    except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
        raise BrokerRefused(f"the broker at {settings.bootstrap_servers} refused the login of "
                            f"{settings.sasl_username!r} ({settings.sasl_mechanism}): "
                            f"{exc}") from None
    except ssl.SSLError as exc:
        raise BrokerRefused(f"TLS with the broker at {settings.bootstrap_servers} failed: "
                            f"{exc.reason or exc} (CALCSTREAM_SSL_CAFILE, _SSL_CERTFILE, "
                            "_SSL_KEYFILE)") from None
    except (KafkaError, OSError, TimeoutError):
        return  # not up yet: the caller retries
    conn.close()


async def ensure_topics(settings: BrokerSettings, partitions: int | None = None) -> list[str]:
    """Create whichever of the deployment's topics are missing; return the names created."""
    admin = AIOKafkaAdminClient(**settings.connection_options())
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
            if code in _NOT_AUTHORIZED:
                who = (f"user {settings.sasl_username!r}" if settings.sasl_username
                       else "this client")
                raise BrokerRefused(
                    f"the broker refused {who} the topic {topic}: it is missing or no ACL "
                    f"lets {who} see it, and it may not create it ({message or code}); create "
                    "the topics, or grant the ACLs (docs/security.md, Kafka)")
            if code not in (0, _TOPIC_EXISTS):
                raise KafkaError(f"could not create topic {topic}: {code} {message}")
        logger.info("created topics %s", ", ".join(missing))
        return missing
    except KafkaConnectionError as exc:
        raise BrokerUnavailable(str(exc)) from exc
    finally:
        await admin.close()


async def wait_for_group(
    broker: Broker, group_id: str, members: int, timeout: float = 60.0,
    topic: str | None = None,
) -> None:
    """Return once ``group_id`` is Stable with at least ``members`` members (joined, assigned)
    and, given a ``topic``, its members own every partition of it."""
    admin = AIOKafkaAdminClient(**connection(broker))
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
