"""``python -m bench.tools.filling_broker [ROUNDS]``: W1 ``?wait`` rounds back to back on one
calcstream stack, with each process's CPU seconds per 1,000 results, to show whether one gets
slower as the broker fills up (Tansu did, FINDINGS 0)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from bench.harness import payloads
from bench.harness.config import Plan
from bench.harness.procs import cpu_seconds
from bench.harness.stack import CalcstreamStack
from bench.harness.targets import calcstream_target
from bench.workloads import saturation


async def main(rounds: int) -> None:
    """Start a stack, run ``rounds`` 8 s W1 rounds, print a line per round."""
    stack = CalcstreamStack(Path(tempfile.mkdtemp(prefix="bench-degrade-")), "degrade")
    await stack.start()
    try:
        plan, pool = Plan.full(), payloads.w1_pool()
        broker_pid = stack.broker.pid
        assert broker_pid is not None
        pids = {"broker": broker_pid, "api": stack.api.pid, "worker": stack.children[0].pid}
        for round_ in range(rounds):
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            figure = await saturation.saturate(calcstream_target(stack), pool, plan, 8.0)
            answered = figure["ok_per_s"] * 8.0
            per = {name: round((cpu_seconds(pid) - before[name]) / max(answered, 1) * 1000, 3)
                   for name, pid in pids.items()}
            print(f"round {round_ + 1}: {figure['ok_per_s']:,.0f} req/s; CPU s per 1,000 "
                  f"results {per}", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
