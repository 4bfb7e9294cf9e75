"""``python -m bench [--quick] [--only NAME ...]``: run the suite, write REPORT.md and plots."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import report, runner
from bench.config import Plan

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="one short run of everything (~1 minute), no figures to trust")
    parser.add_argument("--only", nargs="+", choices=runner.WORKLOADS, metavar="NAME",
                        help=f"run only these workloads: {', '.join(runner.WORKLOADS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="where REPORT.md, results.json and the plots go (default: bench/; "
                        "with --quick, a temporary directory, so a smoke run never replaces "
                        "the full report)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plan = Plan.smoke() if args.quick else Plan.full()
    only = tuple(args.only or runner.WORKLOADS)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        started = time.perf_counter()
        try:
            results = asyncio.run(runner.run(plan, only, Path(tmp)))
        except BaseException:
            print(f"bench failed; process logs were in {tmp}:", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-3:]
                print(f"  {log.name}: {' | '.join(tail)}", file=sys.stderr)
            raise
    results["command"] = command.strip()
    results["wall_seconds"] = time.perf_counter() - started
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    path = report.write(results, out)
    print(f"wrote {path} in {results['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
