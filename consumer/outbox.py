"""Publishing many records at once: one record batch per partition instead of one ``send`` each.

``AIOKafkaProducer.send`` costs a future, a partitioner call and an accumulator visit per record;
a worker publishing a batch of 512 results spends more of its event loop on that than on the
network. ``send_all`` builds the record batches itself (the producer's own ``BatchBuilder``,
up to ``max_batch_size`` each) and hands each to ``send_batch``: one future per record batch.
Records without a partition go to their key's partition (``schemas.topics.partition_of``,
as the API places requests), unkeyed ones to a random partition. So do records naming a
partition their topic does not have (a reply-partition header of a request written with
another partition count in mind): a batch the broker refuses forever would block the worker.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.topics import partition_of

Outgoing = tuple[str, int | None, bytes | None, bytes | None, list[tuple[str, bytes]] | None]
"""(topic, partition or None, key, value, headers or None)."""


async def send_all(producer: AIOKafkaProducer, records: Sequence[Outgoing]
                   ) -> tuple[list[Outgoing], list[BaseException]]:
    """Send ``records`` and wait for every ack; (the records not acknowledged, the errors).

    Records are grouped by topic and partition, in order within each group, so a partition
    receives them in the order given.
    """
    groups: dict[tuple[str, int], list[Outgoing]] = {}
    errors: list[BaseException] = []
    known: dict[str, list[int]] = {}
    for record in records:
        topic, partition, key = record[0], record[1], record[2]
        partitions = known.get(topic)
        if partitions is None:
            try:  # waits for metadata, as send() does: a broker away fails it in time
                partitions = known[topic] = sorted(await producer.partitions_for(topic))
            except KafkaError as exc:
                return list(records), [exc]
        if partition is None or partition not in partitions:
            partition = (partition_of(key, partitions) if key is not None
                         else random.choice(partitions))
        groups.setdefault((topic, partition), []).append(record)
    sent: list[tuple[list[Outgoing], asyncio.Future[Any]]] = []
    unsent: list[Outgoing] = []
    for (topic, partition), group in groups.items():
        if errors:
            unsent += group
            continue
        start = 0
        while start < len(group):
            batch = producer.create_batch()
            end = start
            while end < len(group):
                _, _, key, value, headers = group[end]
                if batch.append(timestamp=None, key=key, value=value,
                                headers=headers or []) is None:
                    break
                end += 1
            try:
                sent.append((group[start:end],
                             await producer.send_batch(batch, topic, partition=partition)))
            except KafkaError as exc:
                errors.append(exc)
                unsent += group[start:]
                break
            start = end
    acks = await asyncio.gather(*(fut for _, fut in sent), return_exceptions=True)
    failed = [record for (group, _), ack in zip(sent, acks, strict=True)
              if isinstance(ack, BaseException) for record in group]
    errors += [ack for ack in acks if isinstance(ack, BaseException)]
    return failed + unsent, errors
