"""``python -m bench.tools.worker_cpu [--runs N] [--records N]``: the worker's CPU per record
on the worker path.

The worker-path figure of ``python -m bench`` is a rate, and on a shared two-core host a rate
moves with whatever else runs. The worker drains a backlog on one core, bound by its own CPU,
so its CPU time per record moves less: this tool fills a fresh topic with the same JSON
requests (``bench.workloads.worker_path``), lets one worker drain it, and reads the worker's
CPU from its metrics port answering to its last record. One stack, ``--runs`` drains.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness.procs import Child, cpu_seconds, free_port
from bench.harness.stack import BENCH_ENV, CalcstreamStack, entry_point, worker_metrics
from bench.harness.topics import create_topics
from bench.workloads import worker_path


async def drain(stack: CalcstreamStack, count: int) -> tuple[float, float]:
    """(worker CPU µs per record, records/s) of one worker draining ``count`` requests."""
    suffix = uuid.uuid4().hex[:8]
    requests, results, dlq = (f"wc.{suffix}.{t}" for t in ("requests", "results", "dlq"))
    await create_topics(stack.bootstrap, [requests, results, dlq, f"{requests}.attempts"])
    await worker_path._fill(stack.bootstrap, requests, count)
    port = free_port()
    env = {**BENCH_ENV, **stack.env(), "CALCSTREAM_BOOTSTRAP_SERVERS": stack.bootstrap,
           "CALCSTREAM_REQUESTS_TOPIC": requests, "CALCSTREAM_RESULTS_TOPIC": results,
           "CALCSTREAM_DLQ_TOPIC": dlq, "CALCSTREAM_GROUP_ID": f"wc-{suffix}",
           "CALCSTREAM_CREATE_TOPICS": "false", "CALCSTREAM_METRICS_PORT": str(port)}
    worker = Child(f"wc-worker-{suffix}", entry_point("consumer"), env, stack.log_dir).start()
    try:
        await asyncio.to_thread(worker.wait_port, port, 60)
        before = cpu_seconds(worker.pid)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the worker's counter is read by polling its port
            if (await worker_metrics(port)).get("calcstream_worker_records_total", 0) >= count:
                break
            await asyncio.sleep(0.2)
        else:
            raise TimeoutError(f"the worker did not drain {count} requests in 300 s")
        used = cpu_seconds(worker.pid) - before
    finally:
        worker.stop()
    got = await worker_path._read_all(stack.bootstrap, results, count, 120)
    return used / count * 1e6, worker_path._rate(got)


async def measure(runs: int, count: int) -> list[tuple[float, float]]:
    """Each drain's (µs per record, records/s) on one fresh stack."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-cpu-") as tmp:
        stack = CalcstreamStack(Path(tmp), "worker-cpu")
        try:
            await stack.start()
            return [await drain(stack, count) for _ in range(runs)]
        finally:
            stack.stop()


def main() -> None:
    """Print each drain's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="drains on the one stack")
    parser.add_argument("--records", type=int, default=200_000, help="requests per drain")
    args = parser.parse_args()
    for us, rate in asyncio.run(measure(args.runs, args.records)):
        print(f"worker CPU {us:.2f} µs per record, {rate:,.0f} records/s")


if __name__ == "__main__":
    main()
