"""What a cluster says about its topics, asked through a consumer that subscribes to nothing.

A consumer that assigns partitions by hand knows the metadata of no topic until asked for it:
Kafka answers a metadata request for no topics with none.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition


async def topic_partitions(consumer: AIOKafkaConsumer,
                           topics: Iterable[str]) -> dict[str, list[TopicPartition]]:
    """Every partition of each topic that exists, in order; absent topics are left out."""
    cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - one request, all topics
    out: dict[str, list[TopicPartition]] = {}
    for topic in topics:
        partitions = cluster.partitions_for_topic(topic)
        if partitions is not None:
            out[topic] = [TopicPartition(topic, p) for p in sorted(partitions)]
    return out
