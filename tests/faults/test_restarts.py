"""Clean membership changes: SIGTERM and restart, workers added and removed under load."""

from __future__ import annotations

from tests.faults import scenarios
from tests.faults.harness import Fleet


async def test_sigterm_then_restart_loses_nothing_and_duplicates_nothing(fleet: Fleet) -> None:
    # Small batches, one in flight: the worker is busy when SIGTERM lands.
    fleet.env.update(CALCSTREAM_MAX_BATCH_SIZE="20", CALCSTREAM_MAX_IN_FLIGHT="1")
    run = await scenarios.sigterm_restart(fleet, rate=800, restarts=1)
    v = run.verdict
    print("sigterm", run.figures())
    assert run.notes["exit_codes"] == [0]
    assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
    assert v.duplicates == 0, (f"{v.duplicated_ids} ids answered twice after a clean shutdown"
                               f"\n{fleet.logs()}")
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])


async def test_workers_added_and_removed_under_load_lose_nothing(fleet: Fleet) -> None:
    run = await scenarios.scale(fleet, rate=600, peak=2)
    v = run.verdict
    print("scale", run.figures())
    assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
    assert v.duplicates == 0, f"{v.duplicated_ids} ids answered twice in clean rebalances"
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])
