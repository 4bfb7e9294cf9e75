"""``python -m bench.tools.hop_split``: where a waited W1 request's time goes at a fixed offered
rate.

On a fresh stack (the product's defaults, plus any ``--set``), W1 requests are offered open
loop at ``--rate`` for ``--seconds`` with ``?wait=30``. Every answer carries the worker's
timings, so each request's latency splits into:

- request hop: the API's send of the request record → the worker starting its batch
  (``queue_ms``: the API's produce, the broker, the worker's fetch and batching);
- compute: the batch's compute step (``compute_ms``);
- result hop: the worker's ``completed_at`` → the client reading the answer (the worker's
  produce, the broker, the API's result reader, the HTTP response).

A separate process reads the reply topic with a 1 ms fetch wait and notes when each result
record became readable there, which splits the result hop into the broker part and the API
part. The CPU each process used during the run (cores: CPU seconds per wall second) is printed
too, the load generator's included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from bench.harness import loadgen, payloads
from bench.harness.procs import cpu_seconds
from bench.harness.stack import CalcstreamStack, set_experiment
from schemas.topics import RESULTS


async def observe(bootstrap: str) -> dict[str, tuple[float, float]]:
    """(record timestamp, time read) per result id, until SIGTERM."""
    consumer = AIOKafkaConsumer(RESULTS, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=1)
    await consumer.start()
    seen: dict[str, tuple[float, float]] = {}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in fetched.values():
                for r in records:
                    if r.key is not None:
                        seen[r.key.decode()] = (r.timestamp / 1000, now)
    finally:
        await consumer.stop()
    return seen


async def measure(rate: float, seconds: float) -> None:
    """Run the load on a fresh stack and print the split."""
    pool = payloads.w1_pool()
    answers: list[dict[str, Any]] = []
    right = loadgen.result_check(pool)

    def keep(row: int, body: bytes) -> bool:
        doc = orjson.loads(body)
        doc["_read_at"] = time.time()
        answers.append(doc)
        return right(row, body)

    with tempfile.TemporaryDirectory(prefix="bench-hops-") as tmp:
        stack = CalcstreamStack(Path(tmp), "hops")
        try:
            await stack.start()
            seen_path = Path(tmp) / "seen.json"
            observer = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.tools.hop_split", "--observe", stack.bootstrap,
                str(seen_path), stdout=asyncio.subprocess.PIPE)
            assert observer.stdout is not None
            await observer.stdout.readline()
            pids = {"broker": stack.broker.pid, "worker": stack.children[0].pid,
                    "api": stack.api.pid, "load generator": os.getpid(),
                    "outside reader": observer.pid}
            before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
            started = time.time()
            result = await loadgen.fixed_rate(stack.url + "/v1/calculations?wait=30", pool,
                                              rate, seconds, 200, keep)
            wall = time.time() - started
            cores = {name: (cpu_seconds(pid) - before[name]) / wall
                     for name, pid in pids.items() if pid}
            observer.send_signal(signal.SIGTERM)
            await observer.wait()
            seen: dict[str, list[float]] = orjson.loads(seen_path.read_bytes())
        finally:
            stack.stop()
    print(f"offered {result.offered:,} at {rate:,.0f}/s; answered right "
          f"{len(result.latencies_ms):,}; others {result.wrong + result.failed}")
    print("CPU, cores: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()))
    ok = [d for d in answers if d.get("status") == "ok"]
    both = [d for d in ok if d["id"] in seen]
    rows = [
        ("end to end (client)", result.latencies_ms),
        ("request hop (queue_ms)", [d["queue_ms"] for d in ok]),
        ("compute (compute_ms)", [d["compute_ms"] for d in ok]),
        ("result hop", [(d["_read_at"] - d["completed_at"]) * 1000 for d in ok]),
        ("  worker send → readable outside",
         [(seen[d["id"]][1] - seen[d["id"]][0]) * 1000 for d in both]),
        ("  readable outside → client", [(d["_read_at"] - seen[d["id"]][1]) * 1000 for d in both]),
        ("batch size", [d["batch_size"] for d in ok]),
    ]
    print(f"{'':34} {'p50':>7} {'p90':>7} {'p99':>7}")
    for label, values in rows:
        if values:
            p50, p90, p99 = np.percentile(np.asarray(values, dtype=float), [50, 90, 99])
            print(f"{label:34} {p50:7.1f} {p90:7.1f} {p99:7.1f}")


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.tools.hop_split", description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--set", action="append", default=[], metavar="CALCSTREAM_X=V",
                        help="a setting for the stack's processes (repeat for more)")
    parser.add_argument("--observe", nargs=2, metavar=("BOOTSTRAP", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.observe:
        seen = asyncio.run(observe(args.observe[0]))
        Path(args.observe[1]).write_bytes(orjson.dumps(seen))
        return
    for item in args.set:
        try:
            set_experiment(item)
        except ValueError as exc:
            parser.error(str(exc))
    asyncio.run(measure(args.rate, args.seconds))


if __name__ == "__main__":
    main()
