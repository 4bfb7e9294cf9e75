"""Reply routes: an id's reply partition is its key's partition, and the ids a replica assigns
land on its own share."""

from __future__ import annotations

from producer_api.intake import from_json
from producer_api.routing import ReplyRoutes
from producer_api.store import scoped
from schemas.messages import REPLY_PARTITION_HEADER, TENANT_HEADER, reply_partition_of
from schemas.topics import partition_of


def test_an_ids_reply_partition_is_the_partition_of_its_key() -> None:
    routes = ReplyRoutes(range(12))
    for i in range(200):
        request_id = f"id-{i}"
        expected = partition_of(request_id.encode(), list(range(12)))
        assert routes.partition_of(request_id) == expected
        assert routes.partition_of_key(scoped("acme", request_id)) == expected
        assert routes.header(request_id) == (REPLY_PARTITION_HEADER, str(expected).encode())


def test_assigned_ids_land_on_the_replicas_share() -> None:
    routes = ReplyRoutes(range(12))
    routes.own({2, 7, 11})
    assert all(routes.partition_of(routes.mint()) in {2, 7, 11} for _ in range(500))
    routes.own(())  # owning nothing yet: any fresh id
    assert len({routes.mint() for _ in range(10)}) == 10


def test_a_submit_without_an_id_gets_one_of_the_share_and_its_headers() -> None:
    routes = ReplyRoutes(range(4))
    routes.own({1})
    item = from_json(b'{"op": "sum", "data": [1, 2]}', 100, 0.0, mint=routes.mint)
    assert routes.partition_of(item.id) == 1
    stamped = item.stamped("acme", own=[routes.header(item.id)])
    assert reply_partition_of(stamped.headers) == 1
    assert (TENANT_HEADER, b"acme") in stamped.headers
    assert item.headers != stamped.headers  # the prepared record itself is left alone
