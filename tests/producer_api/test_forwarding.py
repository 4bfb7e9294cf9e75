"""The forwarding hop's parts without a broker: the assignor that tells every replica who owns
which reply partition, and the forwarder's fallback when the owner cannot be reached (a real
closed TCP port). With replicas and a broker: tests/producer_api/test_replicas.py."""

from __future__ import annotations

import socket

import pytest
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from pydantic import ValidationError

from core.net import free_port
from producer_api.forwarding import AdvertisingAssignor, Forwarder, owners_of
from producer_api.settings import ApiSettings


class Cluster:
    """What the assignor reads of the cluster: a topic's partitions."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


def member(url: str) -> ConsumerProtocolMemberMetadata:
    learned: list[dict[int, str]] = []
    return AdvertisingAssignor(url or None, learned.append).metadata(["calc.results"])


def test_every_assignment_carries_who_owns_each_partition() -> None:
    members = {"m-a": member("http://10.0.0.1:8000"), "m-b": member("http://10.0.0.2:8000"),
               "m-c": member("")}  # a replica that advertises nothing still gets a share
    learned: list[dict[int, str]] = []
    leader = AdvertisingAssignor("http://10.0.0.1:8000", learned.append)
    shares = leader.assign(Cluster({"calc.results": set(range(6))}), members)  # type: ignore[arg-type]

    assert set(shares) == set(members)
    owned = {m: {p for _, parts in a.assignment for p in parts} for m, a in shares.items()}
    assert set().union(*owned.values()) == set(range(6)) and all(owned.values())
    expected = {p: url for m, url in (("m-a", "http://10.0.0.1:8000"),
                                      ("m-b", "http://10.0.0.2:8000"))
                for p in owned[m]}
    for assignment in shares.values():
        assert owners_of(assignment.user_data) == expected  # m-c's partitions: not in the map

    # A member learns the map from its own assignment, as the coordinator hands it over.
    leader.on_assignment(shares["m-b"])
    assert learned == [expected]


def test_an_unreadable_map_is_an_empty_one() -> None:
    for user_data in (b"", b"not json", b"[1, 2]", b'{"x": "http://a"}', None):
        assert owners_of(user_data) == {}
    assert owners_of(b'{"3": "http://a:1", "4": ""}') == {3: "http://a:1"}
    learned: list[dict[int, str]] = []
    AdvertisingAssignor(None, learned.append).on_assignment(
        ConsumerProtocolMemberAssignment(0, [("calc.results", [0])], b""))
    assert learned == [{}]


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000/", "http://host:1/api", "ftp://host:1",
                                 "10.0.0.5:8000", "http://a b:1"])
def test_an_advertised_url_is_a_scheme_and_a_host_only(url: str) -> None:
    with pytest.raises(ValidationError):
        ApiSettings(advertised_url=url)


def test_an_advertised_url_may_name_this_host() -> None:
    url = ApiSettings(advertised_url="http://{hostname}:8000").advertised_url
    assert url == f"http://{socket.gethostname()}:8000"


async def test_an_owner_that_cannot_be_reached_leaves_the_read_to_this_replica() -> None:
    forwarder = Forwarder("http://127.0.0.1:1", timeout_s=2.0)
    try:
        closed = f"http://127.0.0.1:{free_port()}"
        assert await forwarder.state(closed, "some-id", {"authorization": "Bearer k"}) is None
        assert (forwarder.forwarded, forwarder.failed) == (0, 1)
    finally:
        await forwarder.close()
