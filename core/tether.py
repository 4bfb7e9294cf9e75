"""Children in sessions of their own that do not outlive the process that started them.

The broker and the services of ``calcstream dev`` each run in a session of their own, so that
the terminal's Ctrl-C or hang-up reaches only their owner, which stops them in order: the
services first (the workers drain and commit), the broker last. An owner that dies without
doing so (SIGKILL, the OOM killer) would leave them running: the broker's port taken, its JVM
holding a gigabyte. ``tether()`` has them stopped instead, in the same order.

The first ``tether()`` of a process starts its watcher: a small Python process (a session of
its own too) that reads a pipe whose writing end only the owner holds. ``tether()`` and
``release()`` write a line to it: which process group to stop, at which stage, or not any
more. When the owner ends, the kernel closes that end; the watcher reads the end of the pipe
and stops the groups still held, a stage at a time (``SERVICES`` before ``BROKERS``): SIGCONT
(a paused child handles nothing else) and SIGTERM to each group of the stage, SIGKILL to those
still there after their grace, then the next stage. An owner that stops a child itself
``release()``s it; an owner that released everything leaves the watcher nothing to do.

The writing end is close-on-exec and not inherited by ``subprocess`` children. A child made
with a bare ``os.fork()`` would hold it open, and the watcher would act only once that child is
gone too; a forked child that tethers starts a watcher of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import subprocess
import sys
import threading

logger = logging.getLogger(__name__)

SERVICES = 0
"""The stage of processes that drain into a broker: stopped first."""
BROKERS = 1
"""The stage of brokers: stopped once every service has gone."""

_WATCH = """\
import os, signal, sys, time

held = {}
for line in sys.stdin:  # until the owner's end of the pipe closes
    verb, group, stage, grace = line.split()
    if verb == "hold":
        held[int(group)] = (int(stage), float(grace))
    else:
        held.pop(int(group), None)


def send(group, signum):
    try:
        os.killpg(group, signum)
        return True
    except OSError:
        return False


for stage in sorted({stage for stage, _ in held.values()}):
    graces = {group: grace for group, (at, grace) in held.items() if at == stage}
    for group in graces:
        send(group, signal.SIGCONT)
        send(group, signal.SIGTERM)
    started = time.monotonic()
    while graces:
        waited = time.monotonic() - started
        for group, grace in list(graces.items()):
            if not send(group, 0):
                del graces[group]
            elif waited >= grace:
                send(group, signal.SIGKILL)
                del graces[group]
        time.sleep(0.05)
"""
"""The watcher. Each line: ``hold GROUP STAGE GRACE`` or ``release GROUP 0 0``."""

_lock = threading.Lock()
_watcher: subprocess.Popen[bytes] | None = None
_watcher_owner = 0
"""The pid that started ``_watcher``: a forked child needs a watcher of its own."""
_held: set[int] = set()
"""The groups this process holds, as its watcher knows them."""


def tether(proc: subprocess.Popen[bytes], stage: int = SERVICES, grace_s: float = 30.0) -> None:
    """Have the process group that ``proc`` leads (``start_new_session=True``) stopped at
    ``stage`` if this process ends without ``release(proc)``: SIGTERM, then SIGKILL after
    ``grace_s`` seconds."""
    if proc.poll() is not None:
        return  # nothing left to stop
    if os.getpgid(proc.pid) != proc.pid:
        raise ValueError(f"pid {proc.pid} does not lead a process group of its own; "
                         "start it with start_new_session=True")
    _tell("hold", proc.pid, stage, grace_s)


def release(proc: subprocess.Popen[bytes]) -> None:
    """Its owner stops ``proc`` itself (or has): the watcher forgets it. Safe to call twice."""
    _tell("release", proc.pid)


def watcher_pid() -> int | None:
    """The pid of this process's watcher, once something was tethered."""
    with _lock:
        watcher = _own_watcher()
        return watcher.pid if watcher is not None else None


def _own_watcher() -> subprocess.Popen[bytes] | None:
    """This process's watcher, not one a parent started before forking it."""
    return _watcher if _watcher_owner == os.getpid() else None


@atexit.register
def _owner_exits() -> None:
    """Close the pipe at a normal exit, as the kernel would at any other; with nothing held,
    the watcher ends at once and is reaped here."""
    with _lock:
        watcher = _own_watcher()
        if watcher is None or watcher.stdin is None:
            return
        watcher.stdin.close()
        if not _held:
            with contextlib.suppress(subprocess.TimeoutExpired):
                watcher.wait(5)


def _tell(verb: str, group: int, stage: int = 0, grace_s: float = 0.0) -> None:
    global _watcher, _watcher_owner
    with _lock:
        watcher = _own_watcher()
        if watcher is None or watcher.poll() is not None:
            if verb != "hold":
                return
            if watcher is not None:
                logger.warning("the tether's watcher (pid %d) is gone; starting another, which "
                               "knows only the processes tethered from now on", watcher.pid)
            watcher = _watcher = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCH], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            _watcher_owner = os.getpid()
            _held.clear()
        pipe = watcher.stdin
        if pipe is None or pipe.closed:
            return  # the owner is exiting: what is still held is the watcher's now
        (_held.add if verb == "hold" else _held.discard)(group)
        try:
            pipe.write(f"{verb} {group} {stage} {grace_s:g}\n".encode())
            pipe.flush()
        except BrokenPipeError:
            pass  # the watcher died since poll(): the next tether() starts another
