"""``python -m bench [--quick] [--only NAME ...]``: run the suite, write REPORT.md and plots
(into bench/results/ unless ``--out`` says elsewhere)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import runner
from bench.harness import launch, procs, stack, wrk
from bench.harness.config import Plan
from bench.harness.targets import PEERS
from bench.report import render


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="one short run of everything (~1 minute), no figures to trust")
    parser.add_argument("--only", nargs="+", choices=runner.WORKLOADS, metavar="NAME",
                        help=f"run only these workloads: {', '.join(runner.WORKLOADS)}")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per figure (default 3, the guarantee comparison 1; 1 with "
                        "--quick)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the API and worker during calcstream's W1 and bulk runs "
                        "(raw samples in profiles/, hottest frames in the report)")
    parser.add_argument("--set", action="append", default=[], metavar="CALCSTREAM_X=V",
                        help="an experiment setting for every calcstream process (repeat for "
                        "more); the report's command line names it")
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=None, metavar="NAME",
                        help=f"measure only these peers next to calcstream ({', '.join(PEERS)}; "
                        "all by default, none with a bare --peers)")
    parser.add_argument("--bulk-items", type=int, default=None,
                        help="requests per bulk run (default 200,000)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other workloads' figures from the existing "
                        "results.json (to re-run one workload)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite REPORT.md and the plots from results.json "
                        "(after editing FINDINGS.md, say)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where REPORT.md, results.json and the plots go (default: "
                        "bench/results/; with --quick, a temporary directory, so a smoke run "
                        "never replaces the full report)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.render:
        out = args.out or render.RESULTS
        path = render.write(orjson.loads((out / "results.json").read_bytes()), out)
        print(f"wrote {path}")
        return 0
    plan = Plan.smoke() if args.quick else Plan.full()
    if args.runs:
        plan = dataclasses.replace(plan, runs=args.runs, guarantee_runs=args.runs)
    for item in args.set:
        try:
            stack.set_experiment(item)
        except ValueError as exc:
            parser.error(str(exc))
    if args.profile:
        plan = dataclasses.replace(plan, profile=True)
    if args.peers is not None:
        plan = dataclasses.replace(plan, peers=tuple(args.peers))
    if args.bulk_items:
        plan = dataclasses.replace(plan, bulk_items=args.bulk_items)
    procs.exit_on_sigterm()  # SIGTERM ends the run like Ctrl-C: its clean-up stops every child
    only = tuple(args.only or runner.WORKLOADS)
    if set(only) & runner.NEEDS_WRK and not wrk.available():
        parser.error(f"{', '.join(sorted(set(only) & runner.NEEDS_WRK))} need Debian's wrk "
                     "(apt-get install wrk); or pick others with --only")
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick
                       else render.RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    commit = render.commit_label()  # before the run: what the processes were started from
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        started = time.perf_counter()
        try:
            results = asyncio.run(runner.run(plan, only, Path(tmp), out))
        except BaseException:
            print(f"bench failed; process logs were in {tmp}:", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-3:]
                print(f"  {log.name}: {' | '.join(tail)}", file=sys.stderr)
            raise
    if os.environ.get(launch.ENV):
        command = f"{launch.ENV}='{os.environ[launch.ENV]}' {command}"
    results["command"] = command.strip()
    results["wall_seconds"] = time.perf_counter() - started
    results["commands"] = {w: results["command"] for w in results["selected"]}
    results["commit"] = commit
    results["commits"] = {w: commit for w in results["selected"]}
    results["machine"] = render.machine()  # as it was when measured, for a later --render
    previous = out / "results.json"
    if args.merge and previous.exists():
        results = merge(orjson.loads(previous.read_bytes()), results)
    (out / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    path = render.write(results, out)
    print(f"wrote {path} in {results['wall_seconds']:.0f} s")
    return 0


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s workloads replace ``old``'s; the rest of ``old`` stays, with its commands."""
    merged = {**old, **{k: v for k, v in new.items() if k not in ("commands", "selected")}}
    merged["commands"] = {**old.get("commands", {}), **new["commands"]}
    merged["commits"] = {**old.get("commits", {}), **new["commits"]}
    merged["selected"] = [w for w in runner.WORKLOADS
                          if w in set(old.get("selected", [])) | set(new["selected"])]
    merged["started"] = min(old.get("started", new["started"]), new["started"])
    merged["wall_seconds"] = old.get("wall_seconds", 0) + new["wall_seconds"]
    merged["command"] = "; ".join(dict.fromkeys(merged["commands"].values()))
    if old.get("plan") != new["plan"]:
        merged["plans"] = {**old.get("plans", {w: old.get("plan") for w in old.get(
            "selected", [])}), **{w: new["plan"] for w in new["selected"]}}
    return merged


if __name__ == "__main__":
    sys.exit(main())
