"""``python -m bench.tools.transaction_interval [--rounds N] [--records N] [--intervals MS ...]``:
the worker path (a backlog of 100-float requests drained by one worker, beside a raw aiokafka
echo of the same backlog) under at_least_once and under exactly_once at each transaction
interval, alternating in every round, each on a fresh stack. Prints one line per run and a
table of medians; ``--out`` keeps every figure as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.harness.stack import CalcstreamStack
from bench.workloads import worker_path


def configs(intervals: list[int]) -> list[tuple[str, dict[str, str]]]:
    """(label, settings): at_least_once, then exactly_once at each interval."""
    found = [("at_least_once", {"CALCSTREAM_PROCESSING_GUARANTEE": "at_least_once"})]
    for ms in intervals:
        found.append((f"exactly_once {ms} ms",
                      {"CALCSTREAM_PROCESSING_GUARANTEE": "exactly_once",
                       "CALCSTREAM_TRANSACTION_INTERVAL_MS": str(ms)}))
    return found


async def run(rounds: int, records: int, intervals: list[int], log_dir: Path
              ) -> dict[str, list[dict[str, Any]]]:
    """Every configuration once per round, each on a stack of its own."""
    figures: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(rounds):
        for i, (label, env) in enumerate(configs(intervals)):
            stack = CalcstreamStack(log_dir, f"interval-{round_}-{i}", workers=0,
                                    with_api=False, env=env)
            await stack.start()
            try:
                figure = await worker_path.measure(stack.bootstrap, stack.env(), stack.log_dir,
                                                   records)
            finally:
                stack.stop()
            figures.setdefault(label, []).append(figure)
            print(f"round {round_ + 1} {label}: worker {figure['worker_per_s']:,.0f}/s, echo "
                  f"{figure['echo_per_s']:,.0f}/s, results {figure['results']:,} "
                  f"({figure['unique_ids']:,} ids), wrong {figure['wrong']}", flush=True)
    return figures


def table(figures: dict[str, list[dict[str, Any]]]) -> str:
    """Medians per configuration, and each against at_least_once's median."""
    base = statistics.median(f["worker_per_s"] for f in figures["at_least_once"])
    lines = ["| configuration | worker records/s | vs at_least_once | worker / echo |",
             "|---|---|---|---|"]
    for label, runs in figures.items():
        rate = statistics.median(f["worker_per_s"] for f in runs)
        ratio = statistics.median(f["worker_vs_echo"] for f in runs)
        lines.append(f"| {label} | {rate:,.0f} ({min(f['worker_per_s'] for f in runs):,.0f}-"
                     f"{max(f['worker_per_s'] for f in runs):,.0f}) | {rate / base:.2f}x | "
                     f"{ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--intervals", type=int, nargs="+", default=[100, 250, 500, 1000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-interval-"))
    figures = asyncio.run(run(args.rounds, args.records, args.intervals, log_dir))
    print(table(figures))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
