"""``python -m bench.tools.idle_cost [--set CALCSTREAM_X=V ...]``: what an idle stack costs.

Starts a fresh stack (broker, one worker, one API), answers one request end to end, lets it
settle for 10 s, then measures each process's CPU over ``--seconds`` with nothing sent: the
fetches that wait at the broker, heartbeats, the loop-lag probes, the metric sweeps.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack


async def measure(seconds: float, settings: dict[str, str]) -> dict[str, float]:
    """CPU ms per second of each process of an idle stack."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        stack = CalcstreamStack(Path(tmp), "idle", env=settings)
        try:
            await stack.start()
            await stack.round_trip(30)
            await asyncio.sleep(10)  # start-up work (JIT, the first sweeps) out of the way
            meter = CpuMeter(stack.pids()).start()
            await asyncio.sleep(seconds)
            return {name: us / 1000 / seconds for name, us in meter.per_item(1).items()}
        finally:
            stack.stop()


def main() -> None:
    """Print the idle CPU per process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to measure")
    parser.add_argument("--set", action="append", default=[], metavar="CALCSTREAM_X=V",
                        help="a setting for every process (repeat for more)")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    used = asyncio.run(measure(args.seconds, settings))
    print(f"idle, {args.seconds:g} s{' with ' + ' '.join(args.set) if args.set else ''}: "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in used.items()) + " ms of CPU a second")


if __name__ == "__main__":
    main()
