"""``python -m bench.tools.trace_cost``: what tracing costs the API per submit and the worker per
record, off (the default) and on, against the code before tracing.

**API:** W1 single submits (``sum_of_squares`` of 1,000 floats, JSON) driven straight into the
API's full ASGI stack (the middleware chain ``producer_api.__main__.config`` builds, fast path
included; no HTTP server, so the API's own share of each request is all that is measured), 32
at a time, each published to a real broker and acknowledged. Figures: the process's CPU per
submit (every thread: the event loop, aiokafka, the span exporter) and submits a second.
Modes, in alternating rounds on fresh apps: ``off``, ``off+tp`` (tracing off, the client sends
a ``traceparent``), ``on`` and ``on+tp`` (tracing on, OTLP/HTTP to a local sink that answers
200 to everything, in a subprocess of its own).

**Worker:** ``process_batch`` (the worker's compute step, in the thread) of 512 binary W1
records, each with the content-type header (``off``) or also a ``traceparent`` (``+tp``): CPU
per record.

``--before``: the same on whatever code ``PYTHONPATH`` points at, assuming nothing of tracing
(run it from an export of the commit before tracing; see bench/FINDINGS.md finding 13).
Results merge into ``--out`` (``bench/results/tracing/trace_cost.json``) by mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.harness import payloads
from bench.harness.topics import create_topics
from core.kafka import EmbeddedKafka
from core.net import free_port
from producer_api.__main__ import config
from producer_api.main import create_app
from producer_api.settings import ApiSettings

CONCURRENCY, SUBMITS, ROUNDS = 32, 3_000, 3
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OUT = Path(__file__).resolve().parents[1] / "results" / "tracing" / "trace_cost.json"

_SINK = """
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


async def submits(asgi: Any, body: bytes, traceparent: bool) -> tuple[float, float]:
    """(CPU µs per submit, submits/s) of SUBMITS submits, CONCURRENCY at a time."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if traceparent:
        headers.append((b"traceparent", TRACEPARENT))
    statuses: list[int] = []

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/calculations",
                 "raw_path": b"/v1/calculations", "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                 "state": {}}
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # nothing more: the client waits for the answer
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await asyncio.wait_for(asgi(scope, receive, send), 10)

    async def client(n: int) -> None:
        for _ in range(n):
            await one()

    await asyncio.gather(*(client(10) for _ in range(CONCURRENCY)))  # warm-up
    statuses.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(SUBMITS // CONCURRENCY) for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if set(statuses) != {202}:
        raise RuntimeError(f"not every submit was accepted: {sorted(set(statuses))}")
    return cpu / len(statuses) * 1e6, len(statuses) / wall


async def api_round(bootstrap: str, topic: str, mode: str, sink: str) -> list[float]:
    """One round of one mode on a fresh app."""
    settings: dict[str, Any] = {"bootstrap_servers": bootstrap, "requests_topic": topic,
                                "results_topic": topic + ".results", "create_topics": False}
    if mode.startswith("on"):
        settings.update(tracing="otlp", otlp_endpoint=sink)
    s = ApiSettings(**settings)
    app = create_app(s)
    asgi = config(s, "127.0.0.1", 0, app).app
    async with app.router.lifespan_context(app):
        await app.state.services.reader.caught_up.wait()
        cpu_us, rate = await submits(asgi, payloads.w1_pool(1).bodies[0], mode.endswith("+tp"))
    return [cpu_us, rate]


def worker_us() -> tuple[float, float]:
    """CPU µs per record of process_batch over 512 binary W1 records, without and with a
    traceparent on each (best of 7, alternating)."""
    from consumer.processing import BatchContext, process_batch
    from schemas.encoding import BINARY, CONTENT_TYPE_HEADER, encode_binary
    from schemas.messages import RequestFields

    plain = [(CONTENT_TYPE_HEADER, BINARY.encode())]
    traced = [*plain, ("traceparent", TRACEPARENT)]
    data = np.asarray(orjson.loads(payloads.w1_pool(1).bodies[0])["data"])
    now = int(time.time() * 1000)
    ctx = BatchContext(worker="bench", group="bench")
    batches = [[Record("calc.requests", 0, i, now, b"r%d" % i,
                       encode_binary(RequestFields(id=f"r{i}", op="sum_of_squares"), data),
                       headers) for i in range(512)] for headers in (plain, traced)]
    best = [float("inf"), float("inf")]
    for _ in range(7):
        for which, records in enumerate(batches):
            started = time.process_time()
            for _ in range(20):
                process_batch(records, ctx)
            best[which] = min(best[which], time.process_time() - started)
    return best[0] / 20 / 512 * 1e6, best[1] / 20 / 512 * 1e6


async def measure(modes: list[str], sink: str, bootstrap: str | None) -> dict[str, Any]:
    """Every mode's rounds, alternating, then the worker figures."""
    with EmbeddedKafka(free_port()) if bootstrap is None else _Given(bootstrap) as broker:
        topic = f"bench.tracing.{os.getpid()}"
        await create_topics(broker.bootstrap_servers, [topic, topic + ".results"])
        rounds: dict[str, list[list[float]]] = {m: [] for m in modes}
        for _ in range(ROUNDS):
            for mode in modes:
                rounds[mode].append(await api_round(broker.bootstrap_servers, topic, mode,
                                                    sink))
                print(f"  {mode:>10}: {rounds[mode][-1][0]:6.1f} µs CPU/submit, "
                      f"{rounds[mode][-1][1]:6.0f} submits/s", flush=True)
    out: dict[str, Any] = {}
    for mode, figures in rounds.items():
        out[mode] = {"api_cpu_us_per_submit": [round(f[0], 1) for f in figures],
                     "api_submits_per_s": [round(f[1]) for f in figures],
                     "api_cpu_us_median": round(statistics.median(f[0] for f in figures), 1)}
    plain, traced = worker_us()
    out[modes[0]]["worker_cpu_us_per_record"] = round(plain, 3)
    out[modes[1]]["worker_cpu_us_per_record"] = round(traced, 3)
    if modes[0] == "off":
        out["off"]["api_hook_us"] = round(hook_us(), 3)
    return out


def hook_us() -> float:
    """µs of the one thing the API's hot path adds with tracing off: reading a submit's
    headers for a traceparent (``producer_api.tracing.carried``; best of 5)."""
    from producer_api.tracing import carried

    headers = [(b"host", b"bench"), (b"user-agent", b"python-httpx/0.28.1"),
               (b"accept", b"*/*"), (b"content-type", b"application/json"),
               (b"content-length", b"19300")]
    n = 200_000
    best = min(timeit.repeat(lambda: carried(headers), number=n, repeat=5,
                             timer=time.process_time))
    return best / n * 1e6


@dataclass
class Record:
    """A consumed request record, as the compute step reads it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class _Given:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap_servers = bootstrap

    def __enter__(self) -> _Given:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def main() -> None:
    """Measure, print, merge into ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.tools.trace_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", action="store_true",
                        help="code without tracing: modes before and before+tp only")
    parser.add_argument("--bootstrap", help="an existing broker (default: an embedded one)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    modes = ["before", "before+tp"] if args.before else ["off", "off+tp", "on", "on+tp"]
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(port)])
    try:
        figures = asyncio.run(measure(modes, f"http://127.0.0.1:{port}/v1/traces",
                                      args.bootstrap))
    finally:
        sink.terminate()
        sink.wait()
    merged = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged.update(figures)
    merged["_meta"] = {"submits": SUBMITS, "concurrency": CONCURRENCY, "rounds": ROUNDS,
                       "load_average": os.getloadavg()[0]}
    args.out.write_text(json.dumps(merged, indent=1) + "\n")
    for mode, f in figures.items():
        print(f"{mode:>10}: API {f['api_cpu_us_median']:.1f} µs CPU/submit (median), "
              f"worker {f.get('worker_cpu_us_per_record', '-')} µs/record")


if __name__ == "__main__":
    main()
