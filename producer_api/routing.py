"""Reply routes: where the result of an id goes, which of those partitions this replica owns,
and fresh ids that land on them. Pure bookkeeping; ``ResultReader`` keeps ``owned`` current.

Every id's reply partition is ``schemas.topics.partition_of(id)`` over the result topic's
partitions, the partition a result keyed by that id always went to, so any replica can tell
from an id alone which partition to read for it. The API writes that partition into the
request's ``reply-partition`` header as well, so the worker need not share the API's view of
the partition count. An id the API assigns is drawn until it lands on a partition the
accepting replica owns: its ``?wait=`` and WebSocket watch are then answered from the share
this replica reads anyway.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable

from schemas.messages import REPLY_PARTITION_HEADER

_SCOPE = "\x1f"  # store.scoped's separator
_MINT_TRIES = 64  # a replica owning 1 of 64 partitions still finds one in 64 draws on average


class ReplyRoutes:
    """The result topic's partitions and this replica's share of them."""

    def __init__(self, partitions: Iterable[int] = ()) -> None:
        self.partitions: list[int] = []
        self.owned: frozenset[int] = frozenset()
        self.owners: dict[int, str] = {}  # partition → its owner's advertised URL, where known
        self._headers: dict[int, tuple[str, bytes]] = {}
        self.reset(partitions)

    def reset(self, partitions: Iterable[int]) -> None:
        """The topic's partitions (all owned until ``own`` says otherwise)."""
        self.partitions = sorted(partitions)
        self.owned = frozenset(self.partitions)
        self._headers = {p: (REPLY_PARTITION_HEADER, str(p).encode()) for p in self.partitions}

    def own(self, partitions: Iterable[int]) -> None:
        """This replica's share changed."""
        self.owned = frozenset(partitions)

    def learn(self, owners: dict[int, str]) -> None:
        """Which replica (by advertised URL) owns which partition, as the group assigned."""
        self.owners = owners

    def owner_elsewhere(self, request_id: str) -> str | None:
        """The advertised URL of the replica that owns ``request_id``'s partition, if that is
        not this one and it advertised one."""
        partition = self.partition_of(request_id)
        return None if partition in self.owned else self.owners.get(partition)

    def partition_of(self, request_id: str) -> int:
        """The partition the result of ``request_id`` goes to."""
        parts = self.partitions
        return parts[zlib.crc32(request_id.encode()) % len(parts)]

    def partition_of_key(self, key: str) -> int:
        """The partition of a store key's id (``store.scoped``)."""
        return self.partition_of(key.rpartition(_SCOPE)[2])

    def header(self, request_id: str) -> tuple[str, bytes]:
        """The ``reply-partition`` header for ``request_id``."""
        return self._headers[self.partition_of(request_id)]

    def mint(self) -> str:
        """A fresh id whose results this replica reads (any fresh id while it owns none)."""
        owned, parts = self.owned, self.partitions
        request_id = uuid.uuid4().hex
        if not owned or len(owned) == len(parts):
            return request_id
        for _ in range(_MINT_TRIES):
            if parts[zlib.crc32(request_id.encode()) % len(parts)] in owned:
                break
            request_id = uuid.uuid4().hex
        return request_id
