"""A worker frozen (SIGSTOP) past its session timeout, then thawed."""

from __future__ import annotations

from tests.faults import scenarios
from tests.faults.harness import Fleet


async def test_a_frozen_worker_loses_its_partitions_and_its_late_commit_is_refused(
    fleet: Fleet,
) -> None:
    run = await scenarios.sigstop(fleet, rate=600)
    v = run.verdict
    print("sigstop", run.figures())
    assert run.notes["refused_in_log"] >= 1, fleet.logs()
    assert run.notes["refused_commits"] >= 1
    assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
    # Late results are copies: same id, valid against the contract, the right value.
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])
