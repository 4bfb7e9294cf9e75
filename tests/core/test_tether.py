"""``core.tether``: children in sessions of their own stop when their owner dies without stopping
them (SIGKILL), paused or not, services before brokers, and are SIGKILLed if they ignore
SIGTERM; a released child is left alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import tether
from tests.processes import ended
from tests.waiting import until

OWNER = """
import json, signal, subprocess, sys
from core import tether
plan = json.loads(sys.argv[1])  # [[stage, grace, release, argv], ...]
children = []
for stage, grace, released, argv in plan:
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
    child.stdout.readline()  # the child says when it is ready
    tether.tether(child, stage, grace)
    if released:
        tether.release(child)
    children.append(child.pid)
print(*children, tether.watcher_pid(), flush=True)
if sys.argv[2] == "exit":
    sys.exit(0)
signal.pause()
"""
"""An owner that starts and tethers children as planned, prints their pids and its watcher's,
then exits or idles until it is killed."""

READY = "import signal, sys, time; print(flush=True)\n"
SLEEPER = [sys.executable, "-c", READY + "signal.pause()"]
STUBBORN = [sys.executable, "-c", "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print(flush=True); signal.pause()"]


def noting(path: Path, name: str, drain_s: float = 0.0) -> list[str]:
    """A child that, on SIGTERM, notes ``name`` in ``path``, takes ``drain_s`` to stop (a worker
    draining), notes that it has, and exits."""
    return [sys.executable, "-c", READY + f"""
def stop(*_):
    with open({str(path)!r}, "a") as notes:
        notes.write("{name} stopping\\n")
    time.sleep({drain_s})
    with open({str(path)!r}, "a") as notes:
        notes.write("{name} stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.pause()
"""]


async def _owner(plan: list[tuple[int, float, bool, list[str]]],
                 then: str = "idle") -> tuple[asyncio.subprocess.Process, list[int], int]:
    """A started owner, its children's pids and its watcher's."""
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, json.dumps(plan), then, stdout=asyncio.subprocess.PIPE)
    assert owner.stdout is not None
    *children, watcher = map(int, (await asyncio.wait_for(owner.stdout.readline(), 30)).split())
    return owner, children, watcher


def _end(pids: list[int]) -> None:
    for pid in pids:
        if not ended(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_killed_owner_takes_its_paused_child_with_it() -> None:
    owner, [child], watcher = await _owner([(tether.SERVICES, 30, False, SLEEPER)])
    try:
        os.kill(child, signal.SIGSTOP)  # a paused child must be continued to handle SIGTERM
        owner.kill()
        await owner.wait()
        await until(lambda: ended(child) and ended(watcher), 10, "the child's and watcher's exit")
    finally:
        _end([child])


async def test_services_are_stopped_before_the_broker(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    owner, children, watcher = await _owner([
        (tether.BROKERS, 30, False, noting(notes, "broker")),
        (tether.SERVICES, 30, False, noting(notes, "worker", drain_s=0.5)),
        (tether.SERVICES, 30, False, noting(notes, "api")),
    ])
    try:
        owner.kill()
        await owner.wait()
        await until(lambda: all(map(ended, [*children, watcher])), 15, "the children's exit")
    finally:
        _end(children)
    lines = notes.read_text().splitlines()
    # The broker hears nothing until every service is gone, the slow one too.
    assert lines[-2:] == ["broker stopping", "broker stopped"], lines
    assert sorted(lines[:-2]) == ["api stopped", "api stopping", "worker stopped",
                                  "worker stopping"], lines


async def test_a_child_that_ignores_sigterm_is_killed_after_its_grace() -> None:
    owner, [child], watcher = await _owner([(tether.SERVICES, 1, False, STUBBORN)])
    try:
        killed = asyncio.get_running_loop().time()
        owner.kill()
        await owner.wait()
        await until(lambda: ended(child), 15, "the child's exit")
        # SIGTERM did nothing; SIGKILL came after the grace.
        assert asyncio.get_running_loop().time() - killed >= 1.0
        await until(lambda: ended(watcher), 10, "the watcher's exit")
    finally:
        _end([child])


async def test_a_released_child_outlives_its_owner() -> None:
    owner, [kept, stopped], watcher = await _owner(
        [(tether.SERVICES, 30, True, SLEEPER), (tether.SERVICES, 30, False, SLEEPER)],
        then="exit")
    try:
        assert await owner.wait() == 0
        # The owner's exit set the watcher off: it stopped the child still held, only that one.
        await until(lambda: ended(stopped) and ended(watcher), 10, "the watcher's work")
        assert not ended(kept)
    finally:
        _end([kept, stopped])


def test_only_a_group_leader_can_be_tethered() -> None:
    # Its group is its owner's: stopping "its" group would stop the owner.
    child = subprocess.Popen(["sleep", "600"])
    try:
        with pytest.raises(ValueError, match="start_new_session"):
            tether.tether(child)
    finally:
        child.kill()
        child.wait()
