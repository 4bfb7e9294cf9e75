"""Raw topics for the measurements that go around the services: create them, fill them.

The worker path, the transport ceiling, the bundling and the ack latency measurements all make
their own topics on a broker of their own, and fill them straight from a client.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Producer

PARTITIONS = 4


async def create_topics(bootstrap: str, names: list[str]) -> None:
    """Topics of ``PARTITIONS`` partitions each, replication 1."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


def produce_all(producer: Producer, topic: str, values: list[bytes], count: int,
                partitions: int | None = None) -> None:
    """Produce ``count`` records keyed by their index, cycling through ``values``, and wait for
    every delivery; with ``partitions``, record i goes to partition i % partitions."""
    for i in range(count):
        partition = -1 if partitions is None else i % partitions  # -1: the partitioner's
        while True:
            try:
                producer.produce(topic, values[i % len(values)], key=b"%d" % i,
                                 partition=partition)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("librdkafka did not deliver every record")
