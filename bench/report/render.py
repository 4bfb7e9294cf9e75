"""``REPORT.md`` from a run's raw figures: tables side by side, ratios, targets, machine.

Findings written by hand live in ``bench/FINDINGS.md`` and are appended verbatim to the main
report (``bench/results/REPORT.md``), so a new run rewrites the figures without losing the
analysis.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.harness.stats import Spread
from consumer.settings import WorkerSettings

PACKAGES = ("numpy", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic",
            "orjson", "aiokafka", "celery", "redis", "aiohttp", "matplotlib")
W1_ORDER = ("inline", "to_thread", "background", "celery", "celery_direct", "calcstream",
            "calcstream_stream")
LABELS = {"calcstream": "calcstream (`?wait=30`)",
          "calcstream_stream": "calcstream (202 + WebSocket results)",
          "celery": "celery (FastAPI front)", "celery_direct": "celery (`delay()` direct)",
          "background": "background (completions)",
          "calcstream_binary": "calcstream (`?wait=30`, raw float64 body, `.npy` result: its "
                               "own contract)"}
BENCH = Path(__file__).resolve().parents[1]
FINDINGS = BENCH / "FINDINGS.md"
RESULTS = BENCH / "results"
"""Where ``python -m bench`` writes by default; the report written there is the main one."""
# The last full run on Tansu, the memory-only stand-in calcstream ran on before Apache Kafka.
TANSU = RESULTS / "tansu-2026-12-02.json"
FIXED_LABELS = {"background": "background (the 202, not the computation)",
                "raw_echo": "raw echo (aiokafka: produce → echo → read, no HTTP)"}


def spread(runs: list[dict[str, Any]] | None, key: str, *sub: str) -> Spread | None:
    """Median/min/max of ``run[key][sub...]`` over the runs that have it."""
    values = []
    for run in runs or []:
        value: Any = run.get(key)
        for s in sub:
            value = value.get(s) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return Spread.of(values) if values else None


def round_ratio(runs: list[dict[str, Any]] | None, against: list[dict[str, Any]] | None,
                key: str, *sub: str) -> Spread | None:
    """Median/min/max over the rounds of ``runs``' figure over ``against``'s in the same round
    (the rounds measure every target one after the other, so a round's pair shares its host)."""
    pairs = [(spread([a], key, *sub), spread([b], key, *sub))
             for a, b in zip(runs or [], against or [], strict=False)]
    values = [a.median / b.median for a, b in pairs if a and b and b.median]
    return Spread.of(values) if values else None


def fmt(s: Spread | None, digits: int = 0) -> str:
    """``median (min–max)``."""
    if s is None:
        return "—"
    if s.runs == 1:
        return f"{s.median:,.{digits}f}"
    return f"{s.median:,.{digits}f} ({s.low:,.{digits}f}–{s.high:,.{digits}f})"


def _ratio(a: Spread | None, b: Spread | None) -> str:
    if a is None or b is None or b.median == 0:
        return "—"
    return f"{a.median / b.median:.2f}×"


def _sh(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def commit_label() -> str:
    """``HEAD`` now (short), and whether tracked files differ from it."""
    return _commit()


def _commit() -> str:
    head = _sh(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short",
                "HEAD"])
    dirty = _sh(["git", "-C", str(Path(__file__).resolve().parent), "status", "--porcelain",
                 "--untracked-files=no"])
    return f"`{head}`" + (" (with uncommitted changes)" if dirty else "")


def _commits(results: dict[str, Any]) -> str:
    by_workload = results.get("commits") or {}
    labels = list(dict.fromkeys(by_workload.values())) or [results.get("commit", _commit())]
    if len(labels) == 1:
        return f"commit {labels[0]}"
    return "commits " + "; ".join(
        f"{label} ({', '.join(w for w, c in by_workload.items() if c == label)})"
        for label in labels)


def machine() -> list[str]:
    """CPU, memory, kernel, load, and the versions of everything measured."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in _sh(["lscpu"]).splitlines()
                if ln.startswith("Model name")), platform.processor())
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), "0")
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    wrk = _sh(["wrk", "--version"]).splitlines()[0:1]
    redis = _sh(["redis-server", "--version"])
    from core.kafka import kafka_version
    from core.kafka.node import DEFAULT_JVM_OPTIONS, extra_jvm_options

    java = _sh(["java", "-version"]).splitlines()[0:1]
    jvm = " ".join([*DEFAULT_JVM_OPTIONS, *extra_jvm_options()])
    return [f"- CPU: {cpu}, {os.cpu_count()} cores (shared by every process of the run, "
            "and with other work on the machine)",
            f"- Broker: Apache Kafka {kafka_version()} (`core.kafka`: one KRaft node, "
            f"`{jvm}`) on {' '.join(java)}",
            f"- Memory: {int(mem) / 1024**2:.1f} GiB; kernel {platform.release()}; "
            f"Python {platform.python_version()}",
            f"- Load average when the run ended: {os.getloadavg()[0]:.2f}",
            f"- Versions: {', '.join(versions)}",
            f"- Tools: {' '.join(wrk)}; {redis}"]


def _w1_table(results: dict[str, Any]) -> list[str]:
    w1 = results.get("w1", {})
    celery = spread(w1.get("celery"), "ok_per_s")
    inline = spread(w1.get("inline"), "ok_per_s")
    rows = ["| target | results/s | × celery | × inline | latency p50 / p99 ms | "
            "/healthz p99 idle → load ms | wrong |", "|---|---|---|---|---|---|---|"]
    for name in W1_ORDER:
        runs = w1.get(name)
        if not runs:
            continue
        key = {"background": "completed_per_s", "celery_direct": "rate"}.get(name, "ok_per_s")
        s = spread(runs, key)
        lat = f"{fmt(spread(runs, 'latency_ms', 'p50'), 1)} / " \
              f"{fmt(spread(runs, 'latency_ms', 'p99'), 1)}" if name != "calcstream_stream" \
            else "submit: " + fmt(spread(runs, "submit_latency_ms", "p50"), 1)
        if name == "celery_direct":
            lat = "—"
        probe = f"{fmt(spread(runs, 'probe_idle_ms', 'p99'), 1)} → " \
                f"{fmt(spread(runs, 'probe_load_ms', 'p99'), 1)}" \
            if name != "celery_direct" else "—"
        wrong = sum(int(r.get("bad", 0) or 0) + int(r.get("wrong", 0) or 0)
                    + int(r.get("wrong_status", 0) or 0) for r in runs)
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            wrong_text = f"{wrong}; {len(errors)} run(s) failed: {errors[0][:80]}"
        else:
            wrong_text = str(wrong)
        rows.append(f"| {LABELS.get(name, name)} | {fmt(s)} | {_ratio(s, celery)} | "
                    f"{_ratio(s, inline)} | {lat} | {probe} | {wrong_text} |")
    bg = w1.get("background")
    if bg:
        rows.append(f"\nbackground accepted {fmt(spread(bg, 'ok_per_s'))} req/s (202s) and "
                    f"completed {fmt(spread(bg, 'completed_per_s'))} computations/s.")
    stream = w1.get("calcstream_stream")
    if stream:
        rows.append(f"\ncalcstream streaming: submits acknowledged "
                    f"{fmt(spread(stream, 'submit_per_s'))}/s; results dropped by the server "
                    f"for a slow reader: {sum(int(r.get('dropped', 0)) for r in stream)}.")
    cpu = []
    for name in ("calcstream", "calcstream_stream"):
        runs = w1.get(name)
        if runs and any(r.get("cpu_us_per_result") for r in runs):
            cpu.append(f"{LABELS[name]} " + " / ".join(
                fmt(spread(runs, "cpu_us_per_result", who))
                for who in ("broker", "api", "worker", "wrk", "bench")))
    if cpu:
        rows.append("\ncalcstream CPU µs per result while wrk ran, broker / API / worker / wrk / "
                    "bench process (probe; WebSocket observer when streaming): "
                    + "; ".join(cpu) + ". On 2 cores, N results/s leaves 2,000,000 / N µs "
                    "for all of them.")
    return rows


def _fixed_table(results: dict[str, Any]) -> list[str]:
    fixed = results.get("fixed", {})
    plan = plan_for(results, "fixed")
    rate = plan["fixed_rate"]
    warmup = plan.get("warmup_seconds", 0)
    warmed = (f" calcstream's stack is fresh for this run: it and the raw echo are offered the "
              f"rate for {warmup:g} s first, not counted (their percentiles are in results.json, "
              "`warmup_latency_ms`; bench/FINDINGS.md 39)." if warmup else "")
    rows = [f"Offered {rate:,.0f} req/s for {plan['fixed_seconds']:g} s, open loop "
            "(aiohttp); latency from each request's scheduled start, so queueing shows."
            + warmed, "",
            "Percentiles are over the right answers; the last column counts the others by "
            "HTTP status (`failed`: no answer within 60 s of the last send).", "",
            "The raw echo is calcstream's two Kafka hops alone, on the same broker right after "
            "calcstream's run (`bench/workloads/echo_rate.py`): the bench process produces the "
            "same bodies at the same rate with the API's producer settings, `bench/peers/echo.py` "
            "sends each on with the worker's settings, and the bench process reads them back with "
            "the API's reader settings; latency from each record's scheduled send.", "",
            "| target | p50 ms | p99 ms | max ms | right / offered | not right, all runs |",
            "|---|---|---|---|---|---|"]
    for name, runs in fixed.items():
        answered = spread(runs, "answered")
        offered = spread(runs, "offered")
        label = FIXED_LABELS.get(name, LABELS.get(name, name))
        rows.append(f"| {label} | {fmt(spread(runs, 'latency_ms', 'p50'), 1)} "
                    f"| {fmt(spread(runs, 'latency_ms', 'p99'), 1)} | "
                    f"{fmt(spread(runs, 'latency_ms', 'max'), 1)} | "
                    f"{fmt(answered)} / {fmt(offered)} | {_not_right(runs)} |")
    return rows


def _guarantee_table(results: dict[str, Any]) -> list[str]:
    """at_least_once beside exactly_once: throughput and latency, same run."""
    runs = results.get("guarantee")
    if not runs:
        return []
    plan = plan_for(results, "guarantee")
    rows = [("worker path, records/s (worker alone, a backlog of "
             f"{plan['worker_path_records']:,})", "worker", ("worker_per_s",), 0),
            (f"W1 bulk JSON, {plan['bulk_items']:,} items end to end, items/s", "bulk",
             ("ok_per_s",), 0),
            (f"W1 at {plan['fixed_rate']:,.0f} req/s (`?wait`), p50 ms", "fixed",
             ("latency_ms", "p50"), 1),
            (f"W1 at {plan['fixed_rate']:,.0f} req/s (`?wait`), p99 ms", "fixed",
             ("latency_ms", "p99"), 1)]
    out = ["## Processing guarantees", "",
           "The same measurements under `CALCSTREAM_PROCESSING_GUARANTEE=at_least_once` and "
           "`exactly_once` (transactions, default `transaction_interval_ms` "
           f"{WorkerSettings().transaction_interval_ms:g}), alternating, each on a fresh stack, "
           f"{_rounds(plan.get('guarantee_runs', plan['runs']))}; readers read `read_committed`. "
           "Goal: exactly_once ≥ 0.7× the throughput.", "",
           "| figure | at_least_once | exactly_once | exactly_once / at_least_once |",
           "|---|---|---|---|"]
    for label, what, (key, *sub), digits in rows:
        alo = spread(runs.get(f"{what}_at_least_once"), key, *sub)
        eos = spread(runs.get(f"{what}_exactly_once"), key, *sub)
        out.append(f"| {label} | {fmt(alo, digits)} | {fmt(eos, digits)} | {_ratio(eos, alo)} |")
    return [*out, ""]


def _rounds(n: int) -> str:
    return "one round" if n == 1 else f"medians of {n} rounds"


def _warmed(plan: dict[str, Any]) -> str:
    """What a closed-loop section says of calcstream's warm-up, when its runs had one."""
    warmup = plan.get("warmup_seconds", 0)
    return (f" calcstream's stack is fresh for each run and gets {warmup:g} s of the same load "
            "first, not counted (bench/FINDINGS.md 39); the peers run in processes started "
            "once for the whole bench." if warmup else "")


def plan_for(results: dict[str, Any], workload: str) -> dict[str, Any]:
    """The plan a workload's figures were taken with (runs merged from several commands)."""
    plan: dict[str, Any] = (results.get("plans") or {}).get(workload) or results["plan"]
    return plan


def _not_right(runs: list[dict[str, Any]]) -> str:
    """Answers that were not right, by HTTP status, plus wrong values and no answers."""
    wanted = {"200", "202"}
    counts: dict[str, int] = {}
    wrong_values = 0
    for run in runs:
        others = 0
        for status, n in run.get("statuses", {}).items():
            if status not in wanted:
                counts[status] = counts.get(status, 0) + n
                others += n
        if "bad" in run:  # wrk: "bad" is the right status with a wrong value
            wrong_values += int(run["bad"])
        else:  # fixed rate: "wrong" is every answer that was not right
            wrong_values += int(run.get("wrong", 0)) - others
        if run.get("failed"):
            counts["failed"] = counts.get("failed", 0) + int(run["failed"])
    if wrong_values > 0:
        counts["wrong value"] = wrong_values
    return ", ".join(f"{k}: {v:,}" for k, v in counts.items()) or "0"


def _targets(results: dict[str, Any]) -> list[str]:
    w1, fixed = results.get("w1", {}), results.get("fixed", {})
    bulk, worker = results.get("bulk", {}), results.get("worker", {}).get("calcstream")
    w2, mem = results.get("w2", {}), results.get("memory", {}).get("calcstream")
    calc, stream = w1.get("calcstream"), w1.get("calcstream_stream")
    p99 = ("probe_load_ms", "p99")
    # Issue 17's targets. The last field names the FINDINGS section that explains a miss.
    checks: list[tuple[str, str, Spread | None, float, bool, str]] = [
        ("W2 `?wait=30`, JSON bodies, vs inline, same round", "≥ 1.5×",
         round_ratio(w2.get("calcstream"), w2.get("inline"), "ok_per_s"), 1.5, True, "19"),
        ("W2, binary body and `.npy` result, vs inline with JSON, same round", "≥ 3×",
         round_ratio(w2.get("calcstream_binary"), w2.get("inline"), "ok_per_s"), 3, True, "19"),
        ("`/healthz` p99 during W2 (JSON bodies)", "≤ 25 ms",
         spread(w2.get("calcstream"), *p99), 25, False, "27"),
        ("W1 `?wait=30` vs to_thread, same round", "≥ 1.0×",
         round_ratio(calc, w1.get("to_thread"), "ok_per_s"), 1.0, True, "2"),
        ("W1 202 + WebSocket vs inline, same round", "≥ 0.8×",
         round_ratio(stream, w1.get("inline"), "ok_per_s"), 0.8, True, "2"),
        ("W1 `?wait=30` vs Celery (FastAPI front), same round", "≥ 15×",
         round_ratio(calc, w1.get("celery"), "ok_per_s"), 15, True, "2"),
        ("W1 bulk, .npy", "≥ 30,000 items/s", spread(bulk.get("npy"), "ok_per_s"), 30000,
         True, "10"),
        ("W1 bulk, JSON", "≥ 15,000 items/s", spread(bulk.get("json"), "ok_per_s"), 15000,
         True, "10"),
        ("Worker path vs raw echo", "≥ 0.8", spread(worker, "worker_vs_echo"), 0.8, True, "5"),
        ("1,000 req/s offered, p99", "≤ 20 ms",
         spread(fixed.get("calcstream"), "latency_ms", "p99"), 20, False, "26"),
        ("/healthz p99 at W1 saturation", "≤ 10 ms", spread(calc, *p99), 10, False, "4"),
        ("API RSS holding 1,000,000 results", "≤ 150 MB", spread(mem, "rss_mb"), 150, False,
         "6"),
        ("1,000 req/s offered, p50 vs a raw echo's at the same rate, same round", "≤ 2×",
         round_ratio(fixed.get("calcstream"), fixed.get("raw_echo"), "latency_ms", "p50"), 2,
         False, "26"),
        ("1,000 req/s offered, p99 vs a raw echo's at the same rate, same round", "≤ 2×",
         round_ratio(fixed.get("calcstream"), fixed.get("raw_echo"), "latency_ms", "p99"), 2,
         False, "26"),
        ("W1 bulk .npy vs a raw aiokafka produce + consume of the same records, same round",
         "≥ 0.5×", round_ratio(bulk.get("npy"), bulk.get("raw_npy"), "ok_per_s"), 0.5, True,
         "26"),
    ]
    rows = ["| target | wanted | measured (median (min–max)) | met |", "|---|---|---|---|"]
    for label, wanted, s, bound, higher, finding in checks:
        if s is None:
            met = "not measured"
        elif s.median >= bound if higher else s.median <= bound:
            met = "yes"
        else:
            met = f"**no** (FINDINGS {finding})"
        digits = 2 if "×" in wanted else 3 if bound < 1 else 1 if bound < 100 else 0
        rows.append(f"| {label} | {wanted} | {fmt(s, digits)} | {met} |")
    return rows


def _other_tables(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    ceiling = results.get("ceiling", {}).get("null")
    if ceiling:
        out += ["## Load generator ceiling", "",
                "Against `bench/peers/null.py` (reads the 19 KB body, answers 202; itself one "
                "uvicorn process, so these bound the generators from below):", "",
                "| generator | req/s |", "|---|---|",
                f"| wrk, 1 thread, 64 connections | {fmt(spread(ceiling, 'wrk_t1_per_s'))} |",
                f"| wrk, 2 threads, 64 connections | {fmt(spread(ceiling, 'wrk_t2_per_s'))} |",
                f"| aiohttp, 64 concurrent (Python) | {fmt(spread(ceiling, 'aiohttp_per_s'))} |",
                ""]
    bulk = results.get("bulk")
    if bulk:
        out += ["## W1 bulk", "",
                f"{plan_for(results, 'bulk')['bulk_items']:,} requests of 1,000 floats through "
                "`POST /v1/calculations/batch`, posts 2 at a time; every result observed on a "
                "WebSocket and checked against its row. CPU µs per item: each process's CPU time "
                "during the run over the results (client: the bench process, posting and "
                "observing); on 2 cores, N items/s leaves 2,000,000 / N µs for all of them. "
                "The raw row is the floor under the .npy row: the records its posts publish "
                "(`intake.from_npy`), produced by the bench process with the API's producer "
                "settings a post at a time and read back with the API's reader settings, on the "
                "same broker right after (`bulk.raw`): one Kafka hop, no HTTP, no worker.", "",
                "| body | items per post | ingest items/s (acked) | end-to-end items/s | "
                "CPU µs per item: broker / API / worker / client | "
                "API loop lag p99 / max, ms (bucket bound) | wrong / dropped |",
                "|---|---|---|---|---|---|---|"]
        for fmt_name, runs in bulk.items():
            per_post = runs[0].get("per_post", "—") if runs else "—"
            bad = sum(int(r.get("wrong", 0)) for r in runs)
            dropped = sum(int(r.get("dropped", 0)) for r in runs)
            errors = [r["error"][:80] for r in runs if "error" in r]
            cpu = " / ".join(fmt(spread(runs, "cpu_us_per_item", who))
                             for who in ("broker", "api", "worker", "client"))
            label = {"raw_npy": "npy's records, raw aiokafka produce + consume"}.get(fmt_name,
                                                                                   fmt_name)
            out.append(f"| {label} | {per_post} | {fmt(spread(runs, 'ingest_per_s'))} | "
                       f"{fmt(spread(runs, 'ok_per_s'))} | {cpu} | "
                       f"{fmt(spread(runs, 'api_loop_lag_p99_ms_at_most'))} / "
                       f"{fmt(spread(runs, 'api_loop_lag_max_ms_at_most'))} | {bad} / {dropped}"
                       f"{'; failed: ' + errors[0] if errors else ''} |")
        out.append("")
    worker = results.get("worker", {}).get("calcstream")
    if worker:
        out += ["## Worker path", "",
                f"{plan_for(results, 'worker')['worker_path_records']:,} JSON requests of 100 "
                "floats "
                "produced to a fresh topic, then drained by one worker (`python -m consumer`), "
                "then by a raw aiokafka echo in its own group.", "",
                "| consumer | records/s | wrong |", "|---|---|---|",
                f"| calcstream worker | {fmt(spread(worker, 'worker_per_s'))} | "
                f"{sum(int(r.get('wrong', 0)) for r in worker)} |",
                f"| raw aiokafka echo | {fmt(spread(worker, 'echo_per_s'))} | — |",
                f"| worker / echo | {fmt(spread(worker, 'worker_vs_echo'), 2)} | |", ""]
    w2 = results.get("w2")
    if w2:
        out += ["## W2 heavy", "", "300×300 `matmul` (A random, B the identity; the first row "
                "of every answer is checked exactly), 64 clients; the stack allows 200,000 "
                "values per request (`CALCSTREAM_MAX_ARRAY_LENGTH`, default 100,000). Every "
                "peer and calcstream's first row take the same JSON bodies of 2.1 MB and answer "
                "1.7 MB of JSON; the last row is calcstream's own binary contract (1.44 MB of raw "
                "float64 in, a 720 KB `.npy` file out), which the peers do not offer. "
                "× inline: each round's figure over the inline peer's in the same round. A "
                "`GET /healthz` probe runs every 10 ms on its own connection.", "",
                "| target | results/s | × inline | latency p50 / p99 ms | "
                "/healthz p99 idle → load ms | not right, all runs |",
                "|---|---|---|---|---|---|"]
        for name, runs in w2.items():
            key = "ok_per_s"
            out.append(f"| {LABELS.get(name, name)} | {fmt(spread(runs, key), 1)} | "
                       f"{fmt(round_ratio(runs, w2.get('inline'), key), 2)}× | "
                       f"{fmt(spread(runs, 'latency_ms', 'p50'), 0)} / "
                       f"{fmt(spread(runs, 'latency_ms', 'p99'), 0)} | "
                       f"{fmt(spread(runs, 'probe_idle_ms', 'p99'), 1)} → "
                       f"{fmt(spread(runs, 'probe_load_ms', 'p99'), 1)} | "
                       f"{_not_right(runs)}"
                       f"{'; failed: ' + runs[0]['error'][:60] if 'error' in runs[0] else ''} |")
        for name in ("calcstream", "calcstream_binary"):
            calc = w2.get(name) or []
            if any(r.get("cpu_us_per_result") for r in calc):
                cpu = " / ".join(fmt(spread(calc, "cpu_us_per_result", who))
                                 for who in ("broker", "api", "worker"))
                out += ["", f"{LABELS.get(name, name)}: CPU µs per W2 result while wrk ran, "
                        f"broker / API / worker: {cpu}."]
        out += ["", "On 2 cores, N results/s leaves 2,000,000 / N µs for all of them.", ""]
    mem = results.get("memory", {}).get("calcstream")
    if mem:
        out += ["## API memory", "",
                "| results remembered | RSS idle MB | RSS full MB | peak MB | bytes/result |",
                "|---|---|---|---|---|",
                f"| {fmt(spread(mem, 'remembered'))} | {fmt(spread(mem, 'idle_rss_mb'))} | "
                f"{fmt(spread(mem, 'rss_mb'))} | {fmt(spread(mem, 'peak_rss_mb'))} | "
                f"{fmt(spread(mem, 'bytes_per_result'))} |", ""]
    cache = results.get("cache")
    if cache:
        out += ["## Result cache", "",
                "The worker's compute step (`process_batch`, in its thread) over batches of "
                "the same requests: no cache, a cold cache (every request a miss: keying and "
                "storing) and a warm one (every request a hit, each checked against the computed "
                "answer). µs per request; `hit vs compute` is no-cache / hit. The worker caches "
                "only `matmul` and `inv`; the `sum_of_squares` rows force the cache on to show "
                "why.", "",
                "| cache | workload | no cache µs | cold µs | hit µs | hit vs compute | "
                "wrong |", "|---|---|---|---|---|---|---|"]
        for kind, runs in cache.items():
            ok = [r for r in runs if "workloads" in r]
            if not ok:
                out.append(f"| {kind} | failed: {runs[0].get('error', '')[:80]} | | | | | |")
                continue
            for name in ok[0]["workloads"]:
                per = [r["workloads"][name] for r in ok]
                out.append(f"| {kind} | {name} | {fmt(spread(per, 'no_cache_us'), 1)} | "
                           f"{fmt(spread(per, 'cold_us'), 1)} | {fmt(spread(per, 'hit_us'), 1)} | "
                           f"{fmt(spread(per, 'hit_speedup'), 1)}× | "
                           f"{sum(int(p['wrong']) for p in per)} |")
        out.append("")
    return out


def _profiles(results: dict[str, Any]) -> list[str]:
    """The hottest frames of each profiled calcstream run (the last run of each)."""
    out: list[str] = []
    for workload in ("w1", "bulk", "worker"):
        for target, runs in results.get(workload, {}).items():
            profiled = [r for r in runs if r.get("profile")]
            if not profiled:
                continue
            for process, prof in profiled[-1]["profile"].items():
                if not out:
                    out = ["## Profiles", "",
                           "py-spy at 100 Hz (`--profile`), busy samples only; the figures of "
                           "profiled runs were taken with py-spy attached.", ""]
                frames = "; ".join(f"{share:.0%} {frame}" for share, frame in prof["hottest"])
                out.append(f"- {workload} / {target} / {process} ([raw]({prof['file']})): "
                           f"{frames}")
    return [*out, ""] if out else []


# (label, workload, target, key, *sub, digits): a figure of both runs, for _against_tansu.
_COMPARED: tuple[tuple[str, str, str, tuple[str, ...], int], ...] = (
    ("W1 inline peer, results/s (the same code on both hosts)", "w1", "inline",
     ("ok_per_s",), 0),
    ("W1 `?wait=30`, results/s", "w1", "calcstream", ("ok_per_s",), 0),
    ("W1 202 + WebSocket, results/s", "w1", "calcstream_stream", ("ok_per_s",), 0),
    ("W1 `?wait=30`, broker CPU µs per result", "w1", "calcstream",
     ("cpu_us_per_result", "broker"), 0),
    ("W1 `?wait=30`, API CPU µs per result", "w1", "calcstream", ("cpu_us_per_result", "api"),
     0),
    ("W1 `?wait=30`, worker CPU µs per result", "w1", "calcstream",
     ("cpu_us_per_result", "worker"), 0),
    ("1,000 req/s offered, p50 ms", "fixed", "calcstream", ("latency_ms", "p50"), 1),
    ("1,000 req/s offered, p99 ms", "fixed", "calcstream", ("latency_ms", "p99"), 1),
    ("W1 bulk JSON, items/s", "bulk", "json", ("ok_per_s",), 0),
    ("W1 bulk .npy, items/s", "bulk", "npy", ("ok_per_s",), 0),
    ("W1 bulk .npy, broker CPU µs per item", "bulk", "npy", ("cpu_us_per_item", "broker"), 0),
    ("Worker path, records/s", "worker", "calcstream", ("worker_per_s",), 0),
    ("Raw aiokafka echo, records/s", "worker", "calcstream", ("echo_per_s",), 0),
    ("W2 matmul 300×300, results/s", "w2", "calcstream", ("ok_per_s",), 1),
    ("W2 inline peer, results/s", "w2", "inline", ("ok_per_s",), 1),
    ("API RSS holding 1,000,000 results, MB", "memory", "calcstream", ("rss_mb",), 0),
)


def _against_tansu(results: dict[str, Any], out: Path) -> list[str]:
    """This run's headline figures beside the last full run on Tansu (a report in ``out``
    names its raw figures by their path from there)."""
    if not TANSU.exists() or results["plan"].get("quick"):
        return []
    import orjson

    tansu: dict[str, Any] = orjson.loads(TANSU.read_bytes())
    rows = ["## Apache Kafka against Tansu", "",
            f"Beside each figure of this run, the same figure from the same bench run from commit "
            f"{tansu.get('commit', '?')}, the last one on Tansu, the memory-only stand-in "
            f"calcstream ran on before ({tansu['started']}, on "
            f"{(tansu.get('machine') or ['?'])[0].removeprefix('- CPU: ')}; raw figures in "
            f"`{os.path.relpath(TANSU, out.resolve())}`). The inline peer runs the same code in "
            "both: its row shows how busy the host was in each. FINDINGS 11 says why the rest "
            "moved.", "",
            "| figure | Apache Kafka (this run) | Tansu | Kafka / Tansu |", "|---|---|---|---|"]
    for label, workload, target, (key, *sub), digits in _COMPARED:
        now = spread(results.get(workload, {}).get(target), key, *sub)
        then = spread(tansu.get(workload, {}).get(target), key, *sub)
        if now is None and then is None:
            continue
        rows.append(f"| {label} | {fmt(now, digits)} | {fmt(then, digits)} | "
                    f"{_ratio(now, then)} |")
    return [*rows, ""]


def render(results: dict[str, Any], plots: list[Path], with_findings: bool = False,
           out: Path = RESULTS) -> str:
    """The whole report, to be written into ``out``; ``FINDINGS.md`` is appended to the main
    one only."""
    plan = results["plan"]
    w1_plan = plan_for(results, "w1")
    lines = ["# calcstream benchmarks", "",
             f"Generated by `{results.get('command', 'python -m bench')}` "
             f"({results['started']} → {results['finished']}, "
             f"{results.get('wall_seconds', 0):.0f} s) against the working tree at "
             f"{_commits(results)}. "
             + ("**Quick smoke run: one short run each; do not quote these figures.**"
                if plan["quick"] else
                f"Figures are medians of {plan['runs']} runs with (min–max)."), "",
             "## Machine", "", *(results.get("machine") or machine()), "",
             "## Targets", "", *_targets(results), "",
             "## W1: 64 clients, sum_of_squares over 1,000 floats", "",
             f"wrk, {w1_plan['connections']} connections, {w1_plan['w1_seconds']:g} s per run; "
             "every "
             "answer's value checked in the wrk script. A `GET /healthz` probe runs every 10 ms "
             "on its own connection." + _warmed(w1_plan), "", *_w1_table(results), "",
             "## W1 at a fixed rate", "", *_fixed_table(results), "",
             *_other_tables(results), *_guarantee_table(results),
             *_against_tansu(results, out)]
    lines += _profiles(results)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    commands = results.get("commands") or {"all": results.get("command", "python -m bench")}
    lines += ["## How to reproduce", "",
              "```", ".venv/bin/pip install -e '.[dev,bench]'",
              *dict.fromkeys(commands.values()), "```", "",
              "Which command produced which section: "
              + ", ".join(f"{w}: `{c}`" for w, c in commands.items()) + ".", "",
              "Each peer is a single uvicorn process (uvloop, httptools, no access log), the "
              "same server settings as the API; Celery runs a prefork worker with concurrency "
              "2 on Redis. calcstream is the embedded Apache Kafka, one worker and the API with "
              "their defaults, except the worker's result cache, which is off "
              "(`CALCSTREAM_CACHE_ENTRIES=0`: the load cycles a few bodies and the peers compute "
              "every request), and where a section names an override. Raw per-run figures "
              "are in `results.json`.", ""]
    if with_findings and FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> Path:
    """Draw the plots and write REPORT.md into ``out``."""
    from bench.report.plots import draw_all  # matplotlib only where plots are drawn

    plots = draw_all(results, out)
    path = out / "REPORT.md"
    path.write_text(render(results, plots, out.resolve() == RESULTS, out))
    return path
