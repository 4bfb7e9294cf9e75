"""A child in a session of its own that does not outlive the process that started it.

The broker and the services of ``calcstream dev`` each run in a session of their own, so that
the terminal's Ctrl-C or hang-up reaches only their owner, which stops them in order. An owner
that dies without stopping them (SIGKILL, the OOM killer) would leave them running: the
broker's port taken, its JVM holding a gigabyte. A ``Tether`` stops them instead: a small
watcher (``/bin/sh``, a session of its own too) reads a pipe whose writing end only the owner
holds. When the owner dies, the kernel closes that end, the watcher reads the end of the pipe,
and it sends the child's process group SIGCONT (a paused child handles nothing else) and
SIGTERM, then SIGKILL if the group is still there after ``grace_s`` seconds. An owner that
stops its child itself ``release()``s the tether first, and the watcher goes without a signal.

The writing end is close-on-exec and not inherited by ``subprocess`` children; a child made
with a bare ``os.fork()`` would hold it open, and the tether would then hold only once that
child is gone too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

logger = logging.getLogger(__name__)

_WATCH = """\
cat >/dev/null
kill -CONT "-$1" 2>/dev/null
kill -TERM "-$1" 2>/dev/null || exit 0
waited=0
while [ "$waited" -lt "$2" ] && kill -0 "-$1" 2>/dev/null; do
  sleep 1
  waited=$((waited + 1))
done
kill -KILL "-$1" 2>/dev/null
exit 0
"""
"""The watcher: ``$1`` the child's process group, ``$2`` the grace in seconds. ``cat`` returns
when the pipe's writing end is closed: the owner exited or died without releasing the tether."""


class Tether:
    """Stops the process group of ``proc`` (which leads it: ``start_new_session=True``) if this
    process ends without ``release()``; ``release()`` is safe to call twice."""

    def __init__(self, proc: subprocess.Popen[bytes], grace_s: int = 30) -> None:
        self.group = proc.pid
        self._watcher: subprocess.Popen[bytes] | None = None
        self._writing = -1
        if proc.poll() is not None:
            return  # nothing left to stop
        if os.getpgid(proc.pid) != proc.pid:
            raise ValueError(f"pid {proc.pid} does not lead a process group of its own; "
                             "start it with start_new_session=True")
        reading, self._writing = os.pipe()
        try:
            self._watcher = subprocess.Popen(
                ["/bin/sh", "-c", _WATCH, "calcstream-tether", str(proc.pid), str(grace_s)],
                stdin=reading, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        except BaseException:
            os.close(self._writing)
            raise
        finally:
            os.close(reading)

    @property
    def watcher_pid(self) -> int | None:
        """The watcher's process id while the tether holds."""
        return self._watcher.pid if self._watcher else None

    def release(self) -> None:
        """The owner stops the child itself (or has): end the watcher without a signal."""
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        # The watcher first, then the pipe: closing it first would set the watcher off.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(watcher.pid, signal.SIGKILL)
        watcher.wait()
        os.close(self._writing)
