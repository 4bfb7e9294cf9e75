"""The embedded three-node cluster: one cluster of three brokers, topics replicated three times
and written to two at least, and acknowledged writes that outlive the partition leader's death."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.kafka import EmbeddedCluster
from core.kafka.cluster import stored_cluster_id
from tests.kafka import create_topics, describe_partitions, topic_config, unique
from tests.waiting import eventually


async def test_three_brokers_answer_as_one_cluster(kafka_cluster: EmbeddedCluster) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_cluster.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_cluster()
    finally:
        await admin.close()
    assert sorted(b["node_id"] for b in described["brokers"]) == [1, 2, 3]
    assert described["cluster_id"] == kafka_cluster.cluster_id
    assert {stored_cluster_id(node.data_dir) for node in kafka_cluster.nodes} == \
        {kafka_cluster.cluster_id}
    assert len({node.data_dir for node in kafka_cluster.nodes}) == 3
    assert len(kafka_cluster.bootstrap_servers.split(",")) == 3


async def test_topics_and_committed_offsets_have_three_replicas_and_need_two(
    kafka_cluster: EmbeddedCluster,
) -> None:
    bootstrap, topic = kafka_cluster.bootstrap_servers, unique("rf")
    await create_topics(bootstrap, [topic], 4, replication=3)

    async def described() -> bool:  # a broker learns of a new topic a moment after it exists
        return len(await describe_partitions(bootstrap, topic)) == 4

    await eventually(described, timeout=30, what="the new topic's four partitions")
    partitions = await describe_partitions(bootstrap, topic)
    assert all(len(p.replicas) == 3 for p in partitions.values()), partitions
    assert len({p.leader for p in partitions.values()}) > 1, "leaders spread over the nodes"
    assert (await topic_config(bootstrap, topic))["min.insync.replicas"] == "2"

    # A group's first commit creates the offsets topic: replicated like any other.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=unique("g"),
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 0})
    finally:
        await consumer.stop()
    offsets = await describe_partitions(bootstrap, "__consumer_offsets")
    assert offsets and all(len(p.replicas) == 3 for p in offsets.values())
    assert (await topic_config(bootstrap, "__consumer_offsets"))["min.insync.replicas"] == "2"


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, request_timeout_ms=10_000)
    await producer.start()
    try:
        acks = [await producer.send(topic, v, partition=0) for v in values]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while len(values) < n:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await consumer.stop()


async def test_acked_writes_survive_a_sigkill_of_the_leader_which_rejoins_the_isr(
    kafka_cluster: EmbeddedCluster,
) -> None:
    bootstrap, topic = kafka_cluster.bootstrap_servers, unique("kill")
    await create_topics(bootstrap, [topic], 1, replication=3)
    before = [f"before-{i}".encode() for i in range(500)]
    await _produce(bootstrap, topic, before)
    leader = (await describe_partitions(bootstrap, topic))[0].leader

    await asyncio.to_thread(kafka_cluster.kill, leader)

    async def elected() -> bool:
        state = (await describe_partitions(bootstrap, topic))[0]
        return state.leader not in (-1, leader) and leader not in state.isr
    await eventually(elected, timeout=30, what="a new leader without the killed node in the ISR")
    after = [f"after-{i}".encode() for i in range(500)]
    await _produce(bootstrap, topic, after)  # two in sync: min.insync.replicas is met
    assert await _read_all(bootstrap, topic, 1000) == before + after

    await asyncio.to_thread(kafka_cluster.start_node, leader)

    async def rejoined() -> bool:
        return leader in (await describe_partitions(bootstrap, topic))[0].isr
    await eventually(rejoined, timeout=60, what=f"node {leader} back in the ISR")
    assert sorted(kafka_cluster.running()) == [1, 2, 3]
