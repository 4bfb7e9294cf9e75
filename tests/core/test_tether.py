"""``core.tether``: a child in a session of its own stops when its owner dies without stopping it
(SIGKILL), paused or not, and is SIGKILLed if it ignores SIGTERM; released, it is left alone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from core.tether import Tether
from tests.processes import ended
from tests.waiting import until

OWNER = """
import signal, subprocess, sys
from core.tether import Tether
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, start_new_session=True)
child.stdout.readline()  # the child says when it is ready
tether = Tether(child, grace_s=int(sys.argv[1]))
print(child.pid, tether.watcher_pid, flush=True)
signal.pause()
"""
"""An owner that tethers the command after its grace and idles until it is killed."""

SLEEPER = [sys.executable, "-c", "import signal; print(flush=True); signal.pause()"]
STUBBORN = [sys.executable, "-c", "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print(flush=True); signal.pause()"]


async def _owned(grace_s: int, command: list[str]) -> tuple[asyncio.subprocess.Process, int, int]:
    """A started owner, its child's pid and its watcher's."""
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, str(grace_s), *command, stdout=asyncio.subprocess.PIPE)
    assert owner.stdout is not None
    child, watcher = map(int, (await asyncio.wait_for(owner.stdout.readline(), 30)).split())
    return owner, child, watcher


async def test_a_killed_owner_takes_its_paused_child_with_it() -> None:
    owner, child, watcher = await _owned(30, SLEEPER)
    try:
        os.kill(child, signal.SIGSTOP)  # a paused child must be continued to handle SIGTERM
        owner.kill()
        await owner.wait()
        await until(lambda: ended(child) and ended(watcher), 10, "the child's and watcher's exit")
    finally:
        if not ended(child):
            os.kill(child, signal.SIGKILL)


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    owner, child, watcher = await _owned(1, STUBBORN)
    try:
        killed = time.monotonic()
        owner.kill()
        await owner.wait()
        await until(lambda: ended(child), 15, "the child's exit")
        # SIGTERM did nothing; SIGKILL came after at least one second of grace.
        assert time.monotonic() - killed >= 0.9
        await until(lambda: ended(watcher), 10, "the watcher's exit")
    finally:
        if not ended(child):
            os.kill(child, signal.SIGKILL)


def test_a_released_tether_leaves_the_child_alone() -> None:
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        tether = Tether(child)
        watcher = tether.watcher_pid
        assert watcher is not None and not ended(watcher)
        tether.release()
        tether.release()  # safe twice
        assert ended(watcher) and tether.watcher_pid is None
        assert child.poll() is None  # the watcher is gone without a signal
    finally:
        child.kill()
        child.wait()


def test_only_a_group_leader_can_be_tethered() -> None:
    # Its group is its owner's: stopping "its" group would stop the owner.
    child = subprocess.Popen(["sleep", "600"])
    try:
        with pytest.raises(ValueError, match="start_new_session"):
            Tether(child)
    finally:
        child.kill()
        child.wait()
