"""The security table's attacks (``attacks.py``) all meet their defence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.attacks import ATTACKS, BURST, RATE, run_attacks, table
from tests.producer_api.tenants import Keyed, keyed_stack


@pytest.fixture(scope="module")
def keyed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    with keyed_stack(kafka_bootstrap, tmp_path_factory.mktemp("attacks"),
                     tenant_rate_per_s=RATE, tenant_burst=BURST) as stack:
        yield stack


async def test_every_attack_is_held(keyed: Keyed) -> None:
    outcomes = await run_attacks(keyed)
    assert len(outcomes) == len(ATTACKS)
    failed = [o for o in outcomes if not o.held]
    assert failed == [], "\n".join(table(outcomes))
