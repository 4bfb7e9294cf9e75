"""Topics that exist but refuse every write, on the shared broker.

A topic whose ``max.message.bytes`` is 1 answers every produce with ``MESSAGE_TOO_LARGE`` at
once, while every other topic works: a topic that exists but cannot be written, as a broker
policy, a full disk or a missing ACL would make it.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REFUSING = {"max.message.bytes": "1"}


async def create_topics_refusing(bootstrap: str, topics: Iterable[str], refused: Iterable[str],
                                 partitions: int) -> None:
    """Create ``topics``; those also in ``refused`` take no record."""
    refused = set(refused)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(t, partitions, 1, topic_configs=REFUSING if t in refused else {})
            for t in topics])
    finally:
        await admin.close()

