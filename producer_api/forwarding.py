"""The forwarding hop: a ``GET`` of an id whose reply partition another replica owns is asked
of that replica, so that pollers spread over every replica do not make each one read every
partition.

Who owns what travels with the reply group's own assignment. Each replica that sets
``advertised_url`` puts that URL in its member metadata; the group's leader, after sharing out
the partitions round robin (as aiokafka's default does), writes the whole map, partition to
owner's URL, into every member's assignment. So every replica learns the map in the same
rebalance that moves the partitions, from the broker, with no other lookup. A replica without
an advertised URL still joins: its partitions are simply not in the map, and a ``GET`` of their
ids borrows the partition as before.

The protocol keeps roundrobin's name. Its shares are roundrobin's and the map is user data, which
a replica of an older version (plain ``roundrobin``) neither sends nor reads: replicas of any
version form one group with one protocol, and while an older one leads, nobody has a map and
every replica borrows, as before. One protocol, not a new name with ``roundrobin`` as the
fallback: aiokafka 0.14 sends a JoinGroup for each protocol it is given, one after the other, each
with a longer list (aio-libs/aiokafka#1168), and a member whose protocols changed makes the
coordinator start another rebalance. Two replicas joining at once then restart each other's
rebalance without end: two members started together in one process went through 233
generations in 30 s without a share, where with one protocol they settle in one or two
(tests/producer_api/test_reader.py).

The forwarded request carries the client's ``Authorization`` and ``Accept`` and a
``x-calcstream-forwarded`` header; a replica never forwards a request that has one, so a map
that is out of date (a rebalance in between) costs at most one extra hop, after which the
receiving replica borrows. If the owner cannot be reached, or answers with a server error
other than 503, the replica borrows the partition itself, as without forwarding.

To a forwarded request for an id it has no result for (404, or ``queued``), the replica asked
adds ``x-calcstream-read-to``: the offset up to which it has read the id's partition into its
store, when it has read the partition whole and forgotten none of the recovery window's
results. The result, if it comes, is at that offset or later: a WebSocket watch or a ``?wait=``
re-post on the asking replica borrows the partition from there (``usecase.recall``). The
header is not relayed to clients.

The map comes from whoever may join the reply group: a member that advertises another URL
receives the ``GET``s of its partitions, with their API keys. On a shared cluster, restrict the
group with ACLs (docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from producer_api.rendering import RESULT_HEADER

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

FORWARDED_HEADER = "x-calcstream-forwarded"
READ_TO_HEADER = "x-calcstream-read-to"
_PASSED_ON = ("authorization", "accept")
_RELAYED = ("content-type", "retry-after", RESULT_HEADER)  # the .npy answer's other fields


class AdvertisingAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """``roundrobin``'s shares, plus every owner's advertised URL in every assignment."""

    name = RoundRobinPartitionAssignor.name  # see the module's docstring

    def __init__(self, url: str | None, learn: Callable[[dict[int, str]], None]) -> None:
        self.url = url
        self.learn = learn

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, list(topics),
                                              (self.url or "").encode())

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        shares = RoundRobinPartitionAssignor.assign(cluster, members)
        owners = {str(partition): url
                  for member, share in shares.items()
                  if (url := _url(members[member].user_data))
                  for _, partitions in share.assignment for partition in partitions}
        user_data = orjson.dumps(owners)
        return {member: ConsumerProtocolMemberAssignment(share.version, share.assignment,
                                                         user_data)
                for member, share in shares.items()}

    def on_assignment(
        self, assignment: ConsumerProtocolMemberAssignment,
    ) -> None:
        self.learn(owners_of(assignment.user_data))


def owners_of(user_data: bytes | None) -> dict[int, str]:
    """The partition → URL map an assignment carries (empty if it is not readable)."""
    try:
        raw: Any = orjson.loads(user_data or b"{}")
        return {int(p): url for p, url in raw.items() if isinstance(url, str) and url}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def _url(user_data: bytes | None) -> str:
    try:
        return (user_data or b"").decode()
    except UnicodeDecodeError:
        return ""


class OwnerAnswer(NamedTuple):
    """What the owning replica answered about an id."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]  # to relay to the client
    read_to: int | None  # no result of the id before this offset of its partition (None:
    # the owner did not say: it has the result, or cannot vouch for what it read)


class Forwarder:
    """Asks the owning replica for an id's state; None when it could not answer.

    aiohttp, not httpx: a forwarded ``GET`` cost this replica about 210 µs of CPU through
    aiohttp and 1,000 through httpx (one client, keep-alive, 2,000 ``GET``s of a small
    document; bench/FINDINGS.md, finding 24)."""

    def __init__(self, own_url: str, timeout_s: float) -> None:
        # Imported here: aiohttp holds 9 MB, which a replica that does not forward keeps.
        import aiohttp

        self.aiohttp = aiohttp
        self.own_url = own_url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=1.0)
        self.session: aiohttp.ClientSession | None = None
        self.forwarded = 0
        self.failed = 0

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def state(self, owner: str, request_id: str, headers: Mapping[str, str],
                    ) -> OwnerAnswer | None:
        """``GET {owner}/v1/calculations/{id}`` with the client's credentials (and its
        ``Accept``, if ``headers`` has one), or None (unreachable, or a server error other
        than 503)."""
        sent = {name: headers[name] for name in _PASSED_ON if name in headers}
        sent[FORWARDED_HEADER] = self.own_url
        if self.session is None:
            self.session = self.aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self.session.get(f"{owner}/v1/calculations/{request_id}",
                                        headers=sent, allow_redirects=False) as response:
                body = await response.read()
        except (self.aiohttp.ClientError, TimeoutError) as exc:
            self.failed += 1
            logger.info("could not ask %s about an id (%s); reading its partition here",
                        owner, type(exc).__name__)
            return None
        if response.status >= 500 and response.status != 503:
            self.failed += 1
            logger.info("%s answered %d about an id; reading its partition here", owner,
                        response.status)
            return None
        self.forwarded += 1
        relayed = [(name.encode(), response.headers[name].encode()) for name in _RELAYED
                   if name in response.headers]
        read_to = response.headers.get(READ_TO_HEADER, "")
        return OwnerAnswer(response.status, body, relayed,
                           int(read_to) if read_to.isdigit() else None)
