"""``python -m bench.tools.poll_cost [--rounds N] [--seconds S] [--connections C]``: what a poll
costs the API, through the fast path and through FastAPI.

For each round, a fresh stack with ``CALCSTREAM_FAST_PATH`` on, then one with it off: one W1
request is answered (``?wait=``), then ``wrk`` sends ``GET /v1/calculations/{id}`` of it (the
result, JSON) for ``--seconds`` on ``--connections`` connections, then ``GET /healthz`` (always
FastAPI's, for reference). Prints the answers a second and the API's CPU per answer; a run with
any answer other than 200 fails.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

import aiohttp

from bench.harness import payloads
from bench.harness.procs import CpuMeter
from bench.harness.stack import CalcstreamStack

_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_REQUESTS = re.compile(r"([0-9]+) requests in")
_NOT_OK = re.compile(r"Non-2xx or 3xx responses:\s+([0-9]+)")


async def _wrk(url: str, seconds: float, connections: int) -> tuple[float, int]:
    """(answers a second, answers) of ``wrk`` GETting ``url``; raises on any answer not 2xx."""
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    rate, requests, not_ok = _RATE.search(out), _REQUESTS.search(out), _NOT_OK.search(out)
    if rate is None or requests is None or not_ok is not None:
        raise RuntimeError(f"wrk against {url}:\n{out}")
    return float(rate.group(1)), int(requests.group(1))


async def measure(fast_path: bool, seconds: float, connections: int
                  ) -> dict[str, tuple[float, float]]:
    """(answers a second, API µs of CPU per answer) of a poll and of ``/healthz``."""
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        stack = CalcstreamStack(Path(tmp), "poll",
                                env={"CALCSTREAM_FAST_PATH": str(fast_path).lower()})
        try:
            await stack.start()
            pool = payloads.w1_pool(1)
            async with aiohttp.ClientSession() as session, session.post(
                    f"{stack.url}/v1/calculations?wait=10", data=pool.bodies[0],
                    headers={"content-type": "application/json"}) as response:
                assert response.status == 200, await response.text()
                request_id = (await response.json())["id"]
            out = {}
            for name, path in (("poll", f"/v1/calculations/{request_id}"),
                               ("/healthz", "/healthz")):
                await _wrk(stack.url + path, 1, connections)  # warm-up
                meter = CpuMeter({"api": stack.api.pid}).start()
                rate, answers = await _wrk(stack.url + path, seconds, connections)
                out[name] = (rate, meter.per_item(answers)["api"])
            return out
        finally:
            stack.stop()


def main() -> None:
    """Print each round's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="fast path on, then off, N times")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk's duration per figure")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for fast_path in (True, False):
            figures = asyncio.run(measure(fast_path, args.seconds, args.connections))
            print(f"fast path {'on ' if fast_path else 'off'}: " + "; ".join(
                f"{name} {rate:,.0f}/s, API {us:.0f} µs each"
                for name, (rate, us) in figures.items()), flush=True)


if __name__ == "__main__":
    main()
