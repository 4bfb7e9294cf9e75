"""Fault scenarios on the three-node cluster, with the load going through the HTTP API.

Two workers and the API run on fresh topics (replication 3, ``min.insync.replicas`` 2) while
``ApiLoad`` submits at a steady rate; a node is then SIGKILLed, frozen or restarted. Besides the
checker's verdict (lost and unseen counted against the ids the API answered 2xx), each fault
records what the API's clients saw: how many 503s and over how long, how long until every
request partition the node led took a request again, and how long until the metadata named
another leader for each (``leader_elected_ms``).

The worker's environment is the fleet's, so the same scenario runs in either processing mode
(``CALCSTREAM_PROCESSING_GUARANTEE`` in ``fleet.env``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.kafka import EmbeddedCluster
from core.net import free_port
from tests.faults.apiload import ApiLoad
from tests.faults.harness import Fleet, Load, Observer, now_ms
from tests.faults.scenarios import Run, healthy
from tests.kafka import describe_all, describe_partitions
from tests.processes import ApiProcess
from tests.waiting import eventually

logger = logging.getLogger(__name__)

@dataclass
class Fault:
    """One thing done to a node, and the request partitions it led at that moment."""

    what: str
    node: int
    at_ms: int
    partitions: set[int]
    leader_elected_ms: int | None = None
    notes: dict[str, int] = field(default_factory=dict)


@dataclass
class Rig:
    """What a fault injector works with."""

    fleet: Fleet
    cluster: EmbeddedCluster
    observer: Observer
    load: ApiLoad

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap_servers

    @property
    def requests(self) -> str:
        return self.fleet.deployment.topics.requests

    async def led_by(self, partition: int = 0) -> tuple[int, set[int]]:
        """The leader of a request partition, and every request partition it leads."""
        state = await describe_partitions(self.bootstrap, self.requests)
        leader = state[partition].leader
        return leader, {p for p, r in state.items() if r.leader == leader}

    async def elected_elsewhere(self, node: int, partitions: set[int], since_ms: int,
                                timeout: float = 60.0) -> int:
        """Wait until the metadata names a leader other than ``node`` for each partition;
        the ms since ``since_ms``."""
        async def moved() -> bool:
            state = await describe_partitions(self.bootstrap, self.requests)
            return all(state[p].leader not in (-1, node) for p in partitions)
        await eventually(moved, timeout, f"a leader other than node {node} for {partitions}")
        return now_ms() - since_ms

    async def back_in_sync(self, node: int, timeout: float = 90.0) -> None:
        """Wait until ``node`` is in the ISR of every partition of every topic (internal ones
        too): until then another node's loss would leave a partition below its minimum."""
        async def in_sync() -> bool:
            return all(node in r.isr for partitions in (await describe_all(self.bootstrap))
                       .values() for r in partitions.values())
        await eventually(in_sync, timeout, f"node {node} in every ISR")

    async def healthy(self) -> None:
        """Wait until every worker answered more requests than it had."""
        await healthy(self.fleet, self.observer, since=dict(self.observer.by_worker))


Injector = Callable[[Rig], Awaitable[list[Fault]]]


async def under_api_load(name: str, fleet: Fleet, cluster: EmbeddedCluster, rate: float,
                         inject: Injector, at_least: int = 0) -> Run:
    """Two workers and the API on the cluster, ``ApiLoad`` at ``rate``; ``inject`` the faults
    once both workers answer; then stop the load (after ``at_least`` submits) and check."""
    dep = fleet.deployment
    api = ApiProcess(dep, "api", free_port())
    started = time.monotonic()
    try:
        async with Observer(dep) as observer:
            fleet.start()
            fleet.start()
            await asyncio.gather(fleet.ready(), api.ready())
            async with ApiLoad(api.base_url, name, rate, dep.partitions) as load:
                rig = Rig(fleet, cluster, observer, load)
                await healthy(fleet, observer, since={})
                logger.info("%s: both workers answer, %d submits so far", name, load.sent)
                faults = await inject(rig)
                await rig.healthy()
                logger.info("%s: the workers answer after the faults", name)
                await load.stop(at_least)
                logger.info("%s: %d submits answered %s", name, load.sent, load.statuses())
            verdict = await observer.settle(load.acked)
            api_alive = api.alive()
    except BaseException:
        print(f"--- api\n{api.log()[-3000:]}")  # the log goes with the process, below
        raise
    finally:
        api.close()
    ends: list[int | None] = [*[f.at_ms for f in faults[1:]], None]
    per_fault = []
    for fault, end in zip(faults, ends, strict=True):
        cost = load.cost(fault.at_ms, end, fault.partitions)
        per_fault.append({"fault": fault.what, **cost.figures(),
                          **({"leader_elected_ms": fault.leader_elected_ms}
                             if fault.leader_elected_ms is not None else {}), **fault.notes})
    statuses = load.statuses()
    return Run(name, verdict, [f.at_ms for f in faults], observer.wrong_values(Load.expected), {
        "submits": load.sent,
        "statuses": dict(sorted(statuses.items())),
        "api_503": statuses.get(503, 0),
        "max_window_503_ms": max((f["window_503_ms"] for f in per_fault), default=0),
        "max_partition_back_ms": max((f["partition_back_ms"] for f in per_fault), default=0),
        "api_alive": api_alive,
        "per_fault": per_fault,
        "scenario_s": round(time.monotonic() - started, 1),
    })


async def leader_kill(fleet: Fleet, cluster: EmbeddedCluster, rate: float, kills: int = 1,
                      at_least: int = 0) -> Run:
    """SIGKILL the leader of request partition 0; once another leads and the API takes
    requests for its partitions again, start it on its data; repeat ``kills`` times."""
    async def inject(rig: Rig) -> list[Fault]:
        faults = []
        for _ in range(kills):
            await rig.healthy()
            victim, led = await rig.led_by(0)
            await asyncio.to_thread(cluster.kill, victim)
            kill = Fault(f"SIGKILL node {victim}", victim, now_ms(), led)
            logger.info("killed node %d, leader of request partitions %s", victim, led)
            kill.leader_elected_ms = await rig.elected_elsewhere(victim, led, kill.at_ms)
            logger.info("partitions %s have other leaders after %d ms", led,
                        kill.leader_elected_ms)
            await rig.load.until_answered(led, kill.at_ms)
            logger.info("the API takes requests for %s again", led)
            await rig.healthy()
            restart = Fault(f"restart node {victim}", victim, now_ms(),
                            set(range(fleet.deployment.partitions)))
            await asyncio.to_thread(cluster.start_node, victim)
            restart.notes["start_ms"] = now_ms() - restart.at_ms
            logger.info("node %d started again", victim)
            await rig.back_in_sync(victim)
            restart.notes["in_sync_after_ms"] = now_ms() - restart.at_ms
            logger.info("node %d in every ISR", victim)
            faults += [kill, restart]
        return faults
    return await under_api_load("leader_kill", fleet, cluster, rate, inject, at_least)


async def broker_pause(fleet: Fleet, cluster: EmbeddedCluster, rate: float, pauses: int = 1,
                       at_least: int = 0) -> Run:
    """SIGSTOP the leader of request partition 0 until the quorum fenced it (its broker
    session expired and its partitions have other leaders) and the API takes requests for
    them again; then SIGCONT it and wait until it is back in every ISR; repeat."""
    async def inject(rig: Rig) -> list[Fault]:
        faults = []
        for _ in range(pauses):
            await rig.healthy()
            victim, led = await rig.led_by(0)
            cluster.pause(victim)
            pause = Fault(f"SIGSTOP node {victim}", victim, now_ms(), led)
            logger.info("stopped node %d, leader of request partitions %s", victim, led)
            try:
                pause.leader_elected_ms = await rig.elected_elsewhere(victim, led, pause.at_ms)
                await rig.load.until_answered(led, pause.at_ms)
            finally:
                cluster.resume(victim)
            resume = Fault(f"SIGCONT node {victim}", victim, now_ms(),
                           set(range(fleet.deployment.partitions)))
            logger.info("node %d continued after %d ms", victim, resume.at_ms - pause.at_ms)
            pause.notes["paused_ms"] = resume.at_ms - pause.at_ms
            await rig.back_in_sync(victim)
            resume.notes["in_sync_after_ms"] = now_ms() - resume.at_ms
            faults += [pause, resume]
        return faults
    return await under_api_load("broker_pause", fleet, cluster, rate, inject, at_least)


async def rolling_restart(fleet: Fleet, cluster: EmbeddedCluster, rate: float,
                          rounds: int = 1, at_least: int = 0) -> Run:
    """Restart every node in turn (controlled shutdown, start on its data), each once the one
    before is back in every ISR; ``rounds`` times over the three."""
    async def inject(rig: Rig) -> list[Fault]:
        faults = []
        state = await describe_partitions(rig.bootstrap, rig.requests)
        for node in [n.node_id for n in cluster.nodes] * rounds:
            await rig.healthy()
            led = {p for p, r in state.items() if r.leader == node}
            restart = Fault(f"restart node {node}", node, now_ms(), led)
            await asyncio.to_thread(cluster.stop_node, node)
            restart.notes["shutdown_ms"] = now_ms() - restart.at_ms
            await asyncio.to_thread(cluster.start_node, node)
            restart.notes["down_ms"] = now_ms() - restart.at_ms
            await rig.back_in_sync(node)
            restart.notes["in_sync_after_ms"] = now_ms() - restart.at_ms
            logger.info("node %d restarted: %s", node, restart.notes)
            state = await describe_partitions(rig.bootstrap, rig.requests)
            faults.append(restart)
        return faults
    return await under_api_load("rolling_restart", fleet, cluster, rate, inject, at_least)
