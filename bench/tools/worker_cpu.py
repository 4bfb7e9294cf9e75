"""``python -m bench.tools.worker_cpu [--runs N] [--records N]``: the worker's CPU per record
on the worker path.

The worker-path figure of ``python -m bench`` is a rate, and on a shared two-core host a rate
moves with whatever else runs. The worker drains a backlog on one core, bound by its own CPU,
so its CPU time per record moves less: this tool runs the worker-path workload
(``bench.workloads.worker_path``: one worker drains a fresh backlog of JSON requests, then a
raw echo drains it too) ``--runs`` times on one stack and prints the worker's CPU per record
beside both rates.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.harness.stack import CalcstreamStack
from bench.workloads import worker_path


async def measure(runs: int, count: int) -> list[dict[str, Any]]:
    """Each run's worker-path figures, on one fresh stack."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-cpu-") as tmp:
        stack = CalcstreamStack(Path(tmp), "worker-cpu")
        try:
            await stack.start()
            return [await worker_path.run(stack, count) for _ in range(runs)]
        finally:
            stack.stop()


def main() -> None:
    """Print each run's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="drains on the one stack")
    parser.add_argument("--records", type=int, default=200_000, help="requests per drain")
    args = parser.parse_args()
    for run in asyncio.run(measure(args.runs, args.records)):
        print(f"worker CPU {run['worker_cpu_us_per_record']:.2f} µs per record, "
              f"{run['worker_per_s']:,.0f} records/s; echo {run['echo_per_s']:,.0f} records/s "
              f"({run['worker_vs_echo']:.3f}); wrong {run['wrong']}")


if __name__ == "__main__":
    main()
