"""The fault scenarios, sized by their caller: small in ``tests/faults`` (``make test``), large in
``python -m tests.faults.chaos`` (``make chaos``). Each returns a ``Run``: the checker's verdict
plus when the faults happened, so recovery time and latency during the fault can be reported.

Faults are paced by data, not by the clock: a worker is killed once it has answered requests,
the next fault waits until its replacement has answered too.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.kafka import EmbeddedKafka
from schemas.messages import DeadLetterHeaders
from tests.faults.checker import Verdict
from tests.faults.harness import Fleet, Load, Observer, markers_skipped, now_ms, uncommitted_copies
from tests.faults.inputs import mixed, produce_outside
from tests.kafka import produce, request_json

UNBOUNDED = 10**9  # a load that runs until the scenario stops it


@dataclass
class Run:
    """What a scenario observed."""

    name: str
    verdict: Verdict
    faults_ms: list[int] = field(default_factory=list)
    wrong_values: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def recovery_ms(self) -> float:
        """The longest stall of a partition with pending work after any of the faults (each
        fault's window runs to the next one)."""
        return max(self.stalls_ms(), default=0.0)

    def stalls_ms(self) -> list[float]:
        """Per fault, the longest stall until the next fault."""
        ends: list[int | None] = [*self.faults_ms[1:], None]
        return [self.verdict.stall_ms(t, end)
                for t, end in zip(self.faults_ms, ends[: len(self.faults_ms)], strict=True)]

    @property
    def fault_p99_ms(self) -> float:
        """p99 latency of requests written from the first fault until the last one recovered."""
        if not self.faults_ms:
            return self.verdict.percentile(99)
        recovery = self.recovery_ms
        until = self.faults_ms[-1] + (recovery if math.isfinite(recovery) else 0) + 1000
        return self.verdict.percentile(99, since_ms=self.faults_ms[0], until_ms=int(until))

    def figures(self) -> dict[str, Any]:
        """The figures a report shows."""
        return {**self.verdict.summary(), "faults": len(self.faults_ms),
                "recovery_ms": round(self.recovery_ms, 1),
                "fault_p99_ms": round(self.fault_p99_ms, 1),
                "wrong_values": len(self.wrong_values), **self.notes}


async def baseline(fleet: Fleet, total: int, rate: float, workers: int = 2) -> Run:
    """No fault: the same load and workers, for comparison."""
    async with Observer(fleet.deployment) as observer:
        for _ in range(workers):
            fleet.start()
        await fleet.ready()
        async with Load(fleet.deployment, "base", total, rate) as load:
            await load.finished()
        verdict = await observer.settle(load.acked)
        return Run("baseline", verdict, wrong_values=observer.wrong_values(Load.expected))


async def healthy(fleet: Fleet, observer: Observer, since: dict[str, int],
                  timeout: float = 60.0) -> None:
    """Wait until every member answered more requests than it had at ``since``."""
    if not await observer.wait_for(
            lambda: all(observer.by_worker.get(w.name, 0) > since.get(w.name, 0)
                        for w in fleet), timeout):
        raise TimeoutError(f"the fleet did not recover within {timeout}s:\n{fleet.logs()}")


async def sigkill(fleet: Fleet, rate: float, kills: int, at_least: int = 0) -> Run:
    """Two workers; SIGKILL the older one once both answer, start a replacement; repeat."""
    async with Observer(fleet.deployment) as observer:
        fleet.start()
        fleet.start()
        await fleet.ready()
        faults: list[int] = []
        async with Load(fleet.deployment, "kill", UNBOUNDED, rate) as load:
            for _ in range(kills):
                await healthy(fleet, observer, since=dict(observer.by_worker))
                victim = fleet.members[0]
                victim.kill()
                faults.append(now_ms())
                fleet.retire(victim)
                fleet.start()
            await healthy(fleet, observer, since=dict(observer.by_worker))
            load.stop(at_least)
            await load.finished()
        verdict = await observer.settle(load.acked)
        return Run("sigkill", verdict, faults, observer.wrong_values(Load.expected),
                   {"kills": kills})


async def sigterm_restart(fleet: Fleet, rate: float, restarts: int, at_least: int = 0) -> Run:
    """Two workers; SIGTERM the older one mid-load (it drains), start a replacement; repeat."""
    async with Observer(fleet.deployment) as observer:
        fleet.start()
        fleet.start()
        await fleet.ready()
        faults: list[int] = []
        codes: list[int] = []
        async with Load(fleet.deployment, "term", UNBOUNDED, rate) as load:
            for _ in range(restarts):
                await healthy(fleet, observer, since=dict(observer.by_worker))
                victim = fleet.members[0]
                faults.append(now_ms())
                codes.append(await victim.terminate())
                if "shut down gracefully" not in victim.log():
                    raise AssertionError(f"{victim.name} did not drain:\n{victim.log()[-3000:]}")
                fleet.retire(victim)
                fleet.start()
            await healthy(fleet, observer, since=dict(observer.by_worker))
            load.stop(at_least)
            await load.finished()
        verdict = await observer.settle(load.acked)
        return Run("sigterm", verdict, faults, observer.wrong_values(Load.expected),
                   {"restarts": restarts, "exit_codes": codes})


async def broker_restart(fleet: Fleet, broker: EmbeddedKafka, rate: float, restarts: int = 1,
                         at_least: int = 0) -> Run:
    """Two workers under load; SIGKILL the broker, start it again on its data; repeat."""
    async with Observer(fleet.deployment) as observer:
        fleet.start()
        fleet.start()
        await fleet.ready()
        faults: list[int] = []
        async with Load(fleet.deployment, "bounce", UNBOUNDED, rate) as load:
            for _ in range(restarts):
                await healthy(fleet, observer, since=dict(observer.by_worker))
                await asyncio.to_thread(broker.kill)
                faults.append(now_ms())
                await asyncio.to_thread(broker.start)
            await healthy(fleet, observer, since=dict(observer.by_worker))
            load.stop(at_least)
            await load.finished()
        verdict = await observer.settle(load.acked)
        notes: dict[str, Any] = {"restarts": restarts, "load_failed": load.failed,
                                 "workers_alive": all(w.alive() for w in fleet)}
        if fleet.exactly_once:
            # A commit the broker completed without its markers (harness.markers_skipped)
            # shows as duplicates of that request partition; say which, and how many
            # duplicates it does not explain.
            skipped = markers_skipped(broker, fleet.deployment.topics.requests)
            notes["markers_skipped_by_broker"] = sorted(skipped)
            notes["duplicates_outside_those_partitions"] = sum(
                1 for rid in verdict.duplicated if verdict.partition_of.get(rid) not in skipped)
        return Run("broker_restart", verdict, faults, observer.wrong_values(Load.expected),
                   notes)


async def sigstop(fleet: Fleet, rate: float, max_cycles: int = 3, until_refused: bool = True,
                  at_least: int = 0) -> Run:
    """Freeze one of two workers past the session timeout, thaw it once the other owns every
    partition; repeat ``max_cycles`` times, or until its late commit was refused."""
    partitions = fleet.deployment.partitions
    async with Observer(fleet.deployment) as observer:
        frozen, other = fleet.start(), fleet.start()
        await fleet.ready()
        faults: list[int] = []
        async with Load(fleet.deployment, "stop", UNBOUNDED, rate) as load:
            for _ in range(max_cycles):
                await healthy(fleet, observer, since=dict(observer.by_worker))
                mark, other_mark = frozen.mark(), other.mark()
                frozen.pause()
                faults.append(now_ms())
                await other.wait_for_assignment(partitions, timeout=60, since=other_mark)
                frozen.resume()
                await frozen.wait_for_log(r"partitions assigned \[\(", timeout=60, since=mark)
                if until_refused and _refused(frozen.log()[mark:]):
                    break
            await healthy(fleet, observer, since=dict(observer.by_worker))
            load.stop(at_least)
            await load.finished()
        verdict = await observer.settle(load.acked)
        late = sum(1 for r in observer.result_records if r.value and b'"worker":"w1"' in r.value)
        return Run("sigstop", verdict, faults, observer.wrong_values(Load.expected), {
            "cycles": len(faults),
            "refused_commits": await frozen.metric("calcstream_worker_commit_failures"),
            "refused_in_log": frozen.log().count("commit refused"),
            "fenced": await frozen.metric("calcstream_worker_transactions_failed"),
            "fenced_in_log": frozen.log().count("was fenced"),
            "results_by_frozen_worker": late,
        })


def _refused(log: str) -> bool:
    """A stale member's late commit was refused (at_least_once) or its transaction fenced
    (exactly_once)."""
    return "commit refused" in log or "was fenced" in log


async def scale(fleet: Fleet, rate: float, peak: int = 3, at_least: int = 0) -> Run:
    """Start with one worker, add workers up to ``peak``, then SIGTERM them down to one."""
    async with Observer(fleet.deployment) as observer:
        fleet.start()
        await fleet.ready()
        faults: list[int] = []
        async with Load(fleet.deployment, "scale", UNBOUNDED, rate) as load:
            await healthy(fleet, observer, since={})
            for _ in range(peak - 1):
                since = dict(observer.by_worker)
                faults.append(now_ms())
                fleet.start()
                await healthy(fleet, observer, since=since)
            while len(fleet.members) > 1:
                since = dict(observer.by_worker)
                leaving = fleet.members[0]
                faults.append(now_ms())
                await leaving.terminate()
                fleet.retire(leaving)
                await healthy(fleet, observer, since=since)
            load.stop(at_least)
            await load.finished()
        verdict = await observer.settle(load.acked)
        return Run("scale", verdict, faults, observer.wrong_values(Load.expected), {
            "membership_changes": len(faults),
            "stall_per_change_ms": [round(ms) for ms in Run("", verdict, faults).stalls_ms()],
        })


async def crash_after_publish(fleet: Fleet, rate: float, crash_after: int = 20,
                              at_least: int = 0) -> Run:
    """One of two workers dies right after a batch's results are acked, before its commit."""
    async with Observer(fleet.deployment) as observer:
        crashing = fleet.start(FAULT_CRASH_AFTER_PUBLISH=str(crash_after),
                               argv_module="tests.faults.failpoints")
        fleet.start()
        await fleet.ready()
        async with Load(fleet.deployment, "crash", UNBOUNDED, rate) as load:
            code = await asyncio.to_thread(crashing.proc.wait, 60)
            faults = [now_ms()]
            fleet.retire(crashing)
            since = dict(observer.by_worker)
            fleet.start()
            await healthy(fleet, observer, since=since)
            load.stop(at_least)
            await load.finished()
        verdict = await observer.settle(load.acked)
        return Run("crash_after_publish", verdict, faults, observer.wrong_values(Load.expected),
                   {"exit_code": code, "crashed_after_batches": crash_after,
                    "uncommitted_copies": await uncommitted_copies(fleet.deployment)})


async def lost_ack(fleet: Fleet, total: int, rate: float, nth: int = 5,
                   stall: bool = False) -> Run:
    """One worker is told a publish failed that the broker in fact acknowledged (the
    broker's answer lost, as when it dies between writing and answering); ``stall``: the
    publish never returns instead."""
    async with Observer(fleet.deployment) as observer:
        fault = "FAULT_STALL_ACK" if stall else "FAULT_LOSE_ACK"
        worker = fleet.start(argv_module="tests.faults.failpoints", **{fault: str(nth)})
        await fleet.ready()
        async with Load(fleet.deployment, "ack", total, rate) as load:
            await load.finished()
        verdict = await observer.settle(load.acked)
        return Run("lost_ack", verdict, [], observer.wrong_values(Load.expected), {
            "injected": ("never returns" if stall else "acknowledgement lost") in worker.log(),
            "uncommitted_copies": await uncommitted_copies(fleet.deployment)})


async def poison(fleet: Fleet, good: int, rate: float, malformed: int = 1000,
                 singular: int = 50) -> Run:
    """Malformed and failing requests from an outside client (librdkafka), among good ones."""
    batch = mixed(good, malformed, singular)
    async with Observer(fleet.deployment) as observer:
        fleet.start()
        fleet.start()
        await fleet.ready()
        started = now_ms()
        acked = await asyncio.to_thread(produce_outside, fleet.deployment.bootstrap,
                                        fleet.deployment.topics.requests, batch, rate)
        ids = ({f"good-{i}" for i in range(good)} | {f"singular-{i}" for i in range(singular)}
               | {"too-big"})
        await observer.wait_for(lambda: len(observer.dead_letters) >= malformed, 120)
        verdict = await observer.settle(ids, requests=len(batch))
        return Run("poison", verdict, [started], notes={
            "written": acked,
            "malformed": malformed,
            "longest_partition_stall_ms": verdict.stall_ms(started),
            "max_latency_by_partition_ms": verdict.max_latency_by_partition(),
        })


async def crash_loop(fleet: Fleet, rate: float, total: int, max_attempts: int = 3) -> Run:
    """A request whose op aborts the worker process, in the middle of a steady load; every
    worker that dies is replaced (as a supervisor would) until the request is dead-lettered."""
    fleet.env.update(FAULT_ABORT_OP="abort_process", CALCSTREAM_MAX_ATTEMPTS=str(max_attempts))
    deaths: list[int] = []
    faults: list[int] = []
    async with Observer(fleet.deployment) as observer:
        worker = fleet.start(argv_module="tests.faults.failpoints")
        await fleet.ready()
        async with Load(fleet.deployment, "loop", total, rate) as load:
            await observer.wait_for(lambda: len(observer.answered) >= total // 4, 60)
            await produce(fleet.deployment.bootstrap, fleet.deployment.topics.requests,
                          [(b"killer", request_json("killer", "abort_process", [1.0]))])
            dead_lettered = asyncio.create_task(
                observer.wait_for(lambda: bool(observer.dead_letters), timeout=120))
            while not dead_lettered.done() and len(deaths) <= max_attempts + 2:
                exited = asyncio.create_task(asyncio.to_thread(worker.proc.wait))
                await asyncio.wait({exited, dead_lettered}, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    deaths.append(exited.result())
                    faults.append(now_ms())
                    fleet.retire(worker)
                    worker = fleet.start(argv_module="tests.faults.failpoints")
            await load.finished()
        verdict = await observer.settle(load.acked | {"killer"})
        killer = [orjson.loads(r.value) for r in observer.result_records if r.key == b"killer"]
        dead = [DeadLetterHeaders.from_headers(r.headers) for r in observer.dead_letters]
        wrong = [rid for rid in observer.wrong_values(
            lambda rid: -1.0 if rid == "killer" else Load.expected(rid)) if rid != "killer"]
        return Run("crash_loop", verdict, faults, wrong, {
            "deaths": deaths,
            "killer_results": [(d["status"], (d["error"] or {}).get("code")) for d in killer],
            "dead_letter_headers": [(h.stage, h.error_class, h.request_id) for h in dead],
        })
