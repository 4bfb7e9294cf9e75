"""Topic names. The defaults below are what every side assumes unless configured otherwise."""

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

REQUESTS = "calc.requests"
RESULTS = "calc.results"
DEAD_LETTERS = "calc.dlq"


@dataclass(frozen=True, slots=True)
class Topics:
    """The three topics of one calcstream deployment."""

    requests: str = REQUESTS
    results: str = RESULTS
    dlq: str = DEAD_LETTERS

    def all(self) -> tuple[str, str, str]:
        """All three names, requests first."""
        return (self.requests, self.results, self.dlq)


def reply_group_of(results: str) -> str:
    """The consumer group the API replicas share a result topic's partitions in, unless
    configured otherwise (``CALCSTREAM_REPLY_GROUP``); what a broker's ACLs must let the API
    read."""
    return f"calcstream-api.{results}"


def partition_of(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a keyed record goes to: CRC-32 of the key, modulo the partition count.

    The API (requests) and the worker (results, dead letters) both use it. Nothing downstream
    depends on which partition an id lands on, only on ids spreading and an id always landing
    alike; CRC-32 is C code, where the Java client's murmur2 (aiokafka's default) is pure
    Python and cost more than anything else about a keyed record.
    """
    return partitions[zlib.crc32(key) % len(partitions)]
