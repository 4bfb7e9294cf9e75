"""A request that kills the worker process every time it is computed: counted across restarts
in the attempts journal, dead-lettered after ``max_attempts`` journaled deaths (plus the first,
which nobody journals: a healthy fleet writes nothing per batch), the rest answered."""

from __future__ import annotations

from tests.faults import scenarios
from tests.faults.failpoints import ABORTED
from tests.faults.harness import Fleet

MAX_ATTEMPTS = 3


async def test_a_request_that_kills_every_worker_is_dead_lettered_after_max_attempts(
    fleet: Fleet,
) -> None:
    run = await scenarios.crash_loop(fleet, rate=300, total=1500, max_attempts=MAX_ATTEMPTS)
    v = run.verdict
    print("crash loop", run.figures())
    assert run.notes["deaths"] == [ABORTED] * (MAX_ATTEMPTS + 1), fleet.logs()
    assert run.notes["dead_letter_headers"] == [("compute", "CrashLoop", "killer")]
    assert run.notes["killer_results"] == [("error", "crash_loop")]
    assert v.lost == [] and v.invalid == [] and v.phantoms == []
    # Records that shared a batch with the killer were computed again, alone, and answered:
    # again only under at_least_once (a dead worker's transaction never commits).
    assert v.duplicates <= (0 if fleet.exactly_once else 2 * 512), v.duplicated[:5]
    assert run.wrong_values == []
