"""``python -m bench.tools.reply_routing``: the CPU each API replica spends per result in the
system, with 1, 2 and 3 replicas under the same load, reply routing on and off.

The load is the same for every configuration: an outside producer writes ``--rate`` requests
a second straight to the request topic (keyed by id, no ``reply-partition`` header: their
results spread over every partition, and no replica submitted them), and ``--http-rate``
submits a second with ``?wait=10`` go round robin to the replicas. One worker, a reply topic
of 12 partitions (so 1, 2 and 3 replicas split it evenly). Each configuration starts its
replicas, waits until they answer and share the topic, lets the load run ``--warmup`` s, then
measures ``--window`` s: each replica's CPU (``/proc``) over the results written to the reply
topic meanwhile, the records each replica read, and the throughput. Each replica's idle CPU is
measured first (``--idle`` s before the load starts), so the figures can also be read above
what a replica spends with nothing to do. Writes
``bench/results/reply_routing.json`` and prints a Markdown table.

``--poll`` makes the HTTP clients pollers instead: each submit goes to one replica (202) and is
then polled with ``GET`` on the next one round robin until answered, the way clients behind a
round-robin balancer poll. ``--forward on,off`` runs each configuration with the replicas
advertising their URLs (the forwarding hop: the ``GET`` is asked of the id's owner) and
without (the replica asked borrows the id's partition).

``--profile DIR`` samples every replica with py-spy through the measured window and prints,
per configuration, the share of each replica's busy samples spent under the product's main
paths (fetching results, handling them, HTTP, the reply group) and its hottest frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import profile
from bench.harness.procs import HOST, Child, CpuMeter
from bench.harness.stack import CalcstreamStack, entry_point, set_experiment, worker_metrics
from core.net import free_port
from schemas.topics import REQUESTS, RESULTS

PARTITIONS = 12
POLL_S = 0.05
RESULTS_FILE = Path(__file__).resolve().parents[1] / "results" / "reply_routing.json"
JSON_HEADERS = {"Content-Type": "application/json"}
PATHS = {
    "fetch": ("_fetch_requests_routine", "_proc_fetch_request", "Fetcher."),
    "results read": ("producer_api/reader.py",),
    "HTTP": ("httptools_impl.py", "starlette/", "fastapi/"),
    "group": ("coordinator.py",),
}
"""Where a replica's samples go: a path counts a sample when any of its markers is in a frame
of the sample's stack (a stack may count for more than one)."""


def shares(path: Path) -> dict[str, float]:
    """Share of a py-spy raw file's busy samples under each of ``PATHS``."""
    counts = dict.fromkeys(PATHS, 0)
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if any(marker in stack.rsplit(";", 1)[-1] for marker in profile.IDLE):
            continue
        busy += int(count)
        for name, markers in PATHS.items():
            if any(marker in stack for marker in markers):
                counts[name] += int(count)
    return {name: round(n / busy, 3) for name, n in counts.items()} if busy else {}


async def end_offsets(bootstrap: str, topic: str) -> int:
    """Records written to ``topic`` so far."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def metric(session: aiohttp.ClientSession, url: str, name: str, label: str = ""
                 ) -> float:
    """Sum of a metric's samples (those with ``label`` in them) on an API replica."""
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and label in line)


async def outside_producer(bootstrap: str, topic: str, rate: float, stop: asyncio.Event) -> None:
    """``rate`` requests a second, keyed by id, without headers, until ``stop``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        tick, sent, started = 0.01, 0, time.monotonic()
        prefix = uuid.uuid4().hex[:8]
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            acks = []
            for i in range(sent, due):
                rid = f"out-{prefix}-{i}"
                acks.append(await producer.send(
                    topic, f'{{"id":"{rid}","op":"sum","data":[{i % 97},1]}}'.encode(),
                    key=rid.encode()))
            sent = due
            if acks:
                await asyncio.gather(*acks)
            await asyncio.sleep(tick)
    finally:
        await producer.stop()


async def http_clients(urls: list[str], rate: float, stop: asyncio.Event,
                       answered: list[float], poll: bool = False) -> None:
    """``rate`` submits a second round robin over ``urls``, with ``?wait=10`` (or, with
    ``poll``, answered 202 and then polled on the next replica every ``POLL_S``); appends each
    result's round trip (seconds) to ``answered``."""
    body = b'{"op":"sum","data":[1.0,2.0]}'
    async with aiohttp.ClientSession() as session:
        async def waited(url: str) -> None:
            started = time.perf_counter()
            async with session.post(f"{url}/v1/calculations?wait=10", data=body,
                                    headers=JSON_HEADERS) as r:
                await r.read()
                if r.status == 200:
                    answered.append(time.perf_counter() - started)

        async def polled(url: str) -> None:
            started = time.perf_counter()
            async with session.post(f"{url}/v1/calculations", data=body,
                                    headers=JSON_HEADERS) as r:
                doc = json.loads(await r.read())
            if r.status != 202:
                return
            other = urls[(urls.index(url) + 1) % len(urls)]
            while time.perf_counter() - started < 10:
                await asyncio.sleep(POLL_S)
                async with session.get(f"{other}/v1/calculations/{doc['id']}") as r:
                    state = json.loads(await r.read())
                if r.status == 200 and state.get("status") == "ok":
                    answered.append(time.perf_counter() - started)
                    return

        async def one(url: str) -> None:
            with contextlib.suppress(aiohttp.ClientError):
                await (polled(url) if poll else waited(url))
        tasks: set[asyncio.Task[None]] = set()
        cycle = itertools.cycle(urls)
        started, sent = time.monotonic(), 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            for _ in range(sent, due):
                task = asyncio.create_task(one(next(cycle)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent = due
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)


async def ready(session: aiohttp.ClientSession, url: str, timeout: float = 90.0) -> None:
    """Wait for ``/readyz`` 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready")


async def shared(session: aiohttp.ClientSession, urls: list[str], timeout: float = 60.0) -> None:
    """Wait until the replicas' shares add up to every partition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [await metric(session, u, "calcstream_api_reply_partitions", 'role="owned"')
                 for u in urls]
        if all(owned) and sum(owned) == PARTITIONS:
            return
        await asyncio.sleep(0.5)


async def worker_batches(stack: CalcstreamStack) -> float:
    """Batches the stack's workers published so far: each is one round of results on the
    reply topic, and a replica whose partitions it touched makes one fetch for it."""
    return sum([float((await worker_metrics(port)).get("calcstream_worker_batches_total", 0))
                for port in stack.metrics_ports])


async def measure(stack: CalcstreamStack, log_dir: Path, replicas: int, routing: bool,
                  args: argparse.Namespace, forward: bool = False) -> dict[str, Any]:
    """One configuration: start the replicas, load, measure, stop them."""
    ports = [free_port() for _ in range(replicas)]
    # Nothing re-read from before: a configuration does not pay for the previous one's results.
    env = stack.env(CALCSTREAM_REPLY_ROUTING=str(routing).lower(),
                    CALCSTREAM_RECOVER_WINDOW_S="0")
    children = [Child(f"api-{'routed' if routing else 'all'}-{replicas}-{i}",
                      [*entry_point("producer_api"), "--host", HOST, "--port", str(p)],
                      {**env, **({"CALCSTREAM_ADVERTISED_URL": f"http://{HOST}:{p}"}
                                 if forward else {})}, log_dir).start()
                for i, p in enumerate(ports)]
    urls = [f"http://{HOST}:{p}" for p in ports]
    stop = asyncio.Event()
    answered: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for url in urls:
                await ready(session, url)
            if routing:
                await shared(session, urls)
            # What a replica spends with nothing to do (the event loop, its fetches and
            # heartbeats, the loop-lag probe), so the figures can be read above it.
            idle = CpuMeter({f"api{i}": c.pid for i, c in enumerate(children)}).start()
            await asyncio.sleep(args.idle)
            idle_per_s = idle.per_item(1)
            load = [asyncio.create_task(outside_producer(stack.bootstrap, REQUESTS, args.rate,
                                                         stop)),
                    asyncio.create_task(http_clients(urls, args.http_rate, stop, answered,
                                                     args.poll))]
            await asyncio.sleep(args.warmup)
            read_before = [await metric(session, u, "calcstream_api_result_records_total")
                           for u in urls]
            results_before = await end_offsets(stack.bootstrap, RESULTS)
            batches_before = await worker_batches(stack)
            answered_before = len(answered)
            pids = {f"api{i}": c.pid for i, c in enumerate(children)}
            meter = CpuMeter(pids).start()
            started = time.monotonic()
            if args.profile:
                tag = f"{'routed' if routing else 'all'}-{replicas}"
                profiles = await profile.record(pids, args.window, args.profile, tag)
            else:
                await asyncio.sleep(args.window)
            elapsed = time.monotonic() - started
            results = await end_offsets(stack.bootstrap, RESULTS) - results_before
            batches = await worker_batches(stack) - batches_before
            per_result = meter.per_item(results)
            read = [await metric(session, u, "calcstream_api_result_records_total") - b
                    for u, b in zip(urls, read_before, strict=True)]
            window_trips = sorted(answered[answered_before:])
            borrowed = [await metric(session, u, "calcstream_api_reply_partitions",
                                     'role="borrowed"') for u in urls]
            stop.set()
            await asyncio.gather(*load)
    finally:
        stop.set()
        for child in children:
            child.stop()
    row = {
        "replicas": replicas, "routing": routing, "forward": forward, "poll": args.poll,
        "borrowed_partitions_each": borrowed,
        "results_per_s": round(results / elapsed, 1),
        "worker_batches_per_s": round(batches / elapsed, 1),
        "cpu_ms_per_s_each": [round(per_result[f"api{i}"] * results / elapsed / 1000, 1)
                              for i in range(replicas)],
        "http_answered_per_s": round(len(window_trips) / elapsed, 1),
        "http_ms_p50_p99": [round(1000 * window_trips[int(q * (len(window_trips) - 1))], 1)
                            for q in (0.5, 0.99)] if window_trips else [],
        "cpu_us_per_result_each": [round(per_result[f"api{i}"], 1) for i in range(replicas)],
        "cpu_us_per_result_mean": round(sum(per_result.values()) / replicas, 1),
        "idle_cpu_ms_per_s_each": [round(idle_per_s[f"api{i}"] / 1000 / args.idle, 1)
                                   for i in range(replicas)],
        "cpu_us_per_result_above_idle_mean": round(sum(
            per_result[f"api{i}"] - idle_per_s[f"api{i}"] / args.idle / (results / elapsed)
            for i in range(replicas)) / replicas, 1),
        "records_read_share_each": [round(r / max(results, 1), 3) for r in read],
    }
    if args.profile:
        row["busy_share_each"] = {name: shares(path) for name, path in profiles.items()}
        row["hottest_each"] = {name: [(round(share, 3), frame)
                                      for share, frame in profile.hottest(path, top=5)]
                               for name, path in profiles.items()}
    print(row, flush=True)
    return row


async def main() -> None:
    """Every configuration, one after the other, on one stack."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="outside producer's requests a second")
    parser.add_argument("--http-rate", type=float, default=100.0,
                        help="HTTP submits a second with ?wait=")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds of idle CPU measured before the load")
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--routing", default="on,off", help="on, off or both (on,off)")
    parser.add_argument("--poll", action="store_true",
                        help="HTTP clients submit (202) and poll GET on the next replica")
    parser.add_argument("--forward", default="off",
                        help="replicas advertise their URLs: on, off or both (on,off)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy every replica through the window, raw files in DIR")
    parser.add_argument("--set", action="append", default=[], metavar="CALCSTREAM_X=V",
                        help="an experiment setting for every process of the stack")
    args = parser.parse_args()
    for item in args.set:
        set_experiment(item)
    routings = [{"on": True, "off": False}[r.strip()] for r in args.routing.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-replies-") as tmp:
        stack = CalcstreamStack(Path(tmp), "replies", with_api=False, partitions=PARTITIONS)
        try:
            await stack.start()
            # On and off side by side for each count: the host's speed drifts between runs
            # (other processes share its two cores) more than within a pair.
            forwards = [{"on": True, "off": False}[f.strip()] for f in args.forward.split(",")]
            for n in (int(x) for x in args.replicas.split(",")):
                for routing, forward in itertools.product(routings, forwards):
                    if forward and not routing:
                        continue  # forwarding needs the reply group's map
                    rows.append(await measure(stack, Path(tmp), n, routing, args, forward))
                    await stack.settle()
        finally:
            stack.stop()
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({
        "command": "python -m bench.tools.reply_routing",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "partitions": PARTITIONS, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows}, indent=2) + "\n")
    print("\n| routing | forward | replicas | results/s | worker batches/s | HTTP results/s "
          "| round trip ms p50 / p99 | CPU µs per result, each replica "
          "| mean | CPU ms/s, each | idle CPU ms/s, each | mean above idle "
          "| share of results each read | partitions borrowed, each |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'on' if r['routing'] else 'off'} | {'on' if r['forward'] else 'off'} "
              f"| {r['replicas']} | {r['results_per_s']} | {r['worker_batches_per_s']} "
              f"| {r['http_answered_per_s']} | {' / '.join(map(str, r['http_ms_p50_p99']))} "
              f"| {r['cpu_us_per_result_each']} "
              f"| {r['cpu_us_per_result_mean']} | {r['cpu_ms_per_s_each']} "
              f"| {r['idle_cpu_ms_per_s_each']} "
              f"| {r['cpu_us_per_result_above_idle_mean']} | {r['records_read_share_each']} "
              f"| {r['borrowed_partitions_each']} |")
    for r in rows:
        for name, busy in r.get("busy_share_each", {}).items():
            print(f"{'on' if r['routing'] else 'off'} {r['replicas']} {name}: busy under {busy}; "
                  f"hottest {r['hottest_each'][name]}")


if __name__ == "__main__":
    asyncio.run(main())
