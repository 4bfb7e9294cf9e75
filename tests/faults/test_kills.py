"""Workers that die: SIGKILL under load, and a crash between publishing and committing; under
at_least_once such a death answers a batch again, under exactly_once never (read_committed).
And a worker that lives but lost a broker's answer to a publish."""

from __future__ import annotations

from tests.faults import scenarios
from tests.faults.conftest import FLEET_ENV
from tests.faults.failpoints import CRASH_EXIT
from tests.faults.harness import Fleet
from tests.kafka import Deployment

BATCH, IN_FLIGHT = 64, 2


async def test_sigkill_loses_nothing_and_duplicates_at_most_a_batch_per_kill(
    fleet: Fleet,
) -> None:
    fleet.env.update(CALCSTREAM_MAX_BATCH_SIZE=str(BATCH), CALCSTREAM_MAX_IN_FLIGHT=str(IN_FLIGHT))
    run = await scenarios.sigkill(fleet, rate=600, kills=2, at_least=2500)
    v = run.verdict
    print("sigkill", run.figures())
    assert v.accepted > 2000
    assert v.lost == [], f"{len(v.lost)} lost, e.g. {v.lost[:5]}\n{fleet.logs()}"
    if fleet.exactly_once:
        assert v.duplicates == 0, f"{v.duplicated[:5]}\n{fleet.logs()}"
    else:
        assert v.duplicates <= 2 * BATCH * IN_FLIGHT
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])


async def test_a_crash_between_publish_and_commit_never_loses(
    fleet: Fleet,
) -> None:
    fleet.env.update(CALCSTREAM_MAX_BATCH_SIZE=str(BATCH), CALCSTREAM_MAX_IN_FLIGHT=str(IN_FLIGHT))
    run = await scenarios.crash_after_publish(fleet, rate=600, crash_after=20)
    v = run.verdict
    print("crash_after_publish", run.figures())
    assert run.notes["exit_code"] == CRASH_EXIT
    assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
    if fleet.exactly_once:
        # The crashed transaction was aborted by the next owner: its results stay in the log,
        # invisible to read_committed, and the next owner's are the only ones.
        assert v.duplicates == 0, f"{v.duplicated[:5]}\n{fleet.logs()}"
        assert run.notes["uncommitted_copies"] >= 1
    else:
        # The crashed batch was published and never committed: its next owner answers it again.
        assert 1 <= v.duplicates <= BATCH * IN_FLIGHT
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])


async def test_a_publish_whose_answer_was_lost_is_never_committed_twice(fleet: Fleet) -> None:
    """The broker wrote the records and the worker heard it failed. Publishing them again
    is at_least_once's way (a duplicate, recognisable by id); inside a transaction it would
    commit them twice, so exactly_once aborts the transaction and starts the partition over."""
    run = await scenarios.lost_ack(fleet, total=1200, rate=600)
    v = run.verdict
    print("lost_ack", run.figures())
    assert run.notes["injected"], fleet.logs()
    assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
    if fleet.exactly_once:
        assert v.duplicates == 0, f"{v.duplicated[:5]}\n{fleet.logs()}"
        assert run.notes["uncommitted_copies"] >= 1, "the first copies are in the log, aborted"
    else:
        assert v.duplicates >= 1, "the records whose answer was lost are published again"
    assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])


async def test_a_publish_that_never_returns_is_given_up_and_answered_once(
        deployment: Deployment) -> None:
    """A producer left waiting for ever (a broker that came back and never answered it) must
    not hold its partition: past ``transaction_publish_timeout_s`` the transaction is given
    up and the partition starts over with a new producer, which fences the stuck one."""
    fleet = Fleet(deployment, {**FLEET_ENV, "CALCSTREAM_PROCESSING_GUARANTEE": "exactly_once",
                               "CALCSTREAM_TRANSACTION_PUBLISH_TIMEOUT_S": "2"})
    try:
        run = await scenarios.lost_ack(fleet, total=1200, rate=600, stall=True)
        v = run.verdict
        print("stalled publish", run.figures())
        assert run.notes["injected"], fleet.logs()
        assert "took over 2.0s" in fleet.logs(tail=None)
        assert v.lost == [], f"{len(v.lost)} lost\n{fleet.logs()}"
        assert v.duplicates == 0, f"{v.duplicated[:5]}\n{fleet.logs()}"
        assert (v.phantoms, v.invalid, run.wrong_values) == ([], [], [])
    finally:
        fleet.close()
