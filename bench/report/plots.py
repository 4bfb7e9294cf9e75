"""PNG plots of a bench run (matplotlib, Agg): throughput, latency CDFs, probe over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.harness.stats import Spread  # noqa: E402

COLOURS = {"inline": "#d62728", "to_thread": "#ff7f0e", "background": "#9467bd",
           "celery": "#8c564b", "celery_direct": "#c49c94", "calcstream": "#1f77b4",
           "calcstream_stream": "#17becf"}


def _ok_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if "error" not in r]


def throughput(results: dict[str, Any], out: Path) -> Path | None:
    """Bars of W1 and W2 throughput per target, median with min–max whiskers."""
    panels = [(w, t) for w, t in (("w1", "W1: sum_of_squares, 1,000 floats, 64 clients"),
                                  ("w2", "W2: 300×300 matmul, 64 clients")) if results.get(w)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (workload, title) in zip(axes[0], panels, strict=True):
        names, spreads = [], []
        for name, runs in results[workload].items():
            good = _ok_runs(runs)
            key = "completed_per_s" if name == "background" else "ok_per_s"
            if name == "celery_direct":
                key = "rate"
            values = [r[key] for r in good if key in r]
            if values:
                names.append(name)
                spreads.append(Spread.of(values))
        x = range(len(names))
        ax.bar(x, [s.median for s in spreads],
               yerr=[[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]],
               color=[COLOURS.get(n, "grey") for n in names], capsize=4)
        ax.set_xticks(list(x), names, rotation=25, ha="right")
        ax.set_ylabel("results/s (background: completions/s)")
        ax.set_title(title, fontsize=10)
        for i, s in enumerate(spreads):
            ax.annotate(f"{s.median:,.0f}", (i, s.median), ha="center", va="bottom",
                        fontsize=8)
    fig.tight_layout()
    path = out / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdf(results: dict[str, Any], out: Path) -> Path | None:
    """End-to-end latency CDF at the fixed offered rate (last run of each target)."""
    fixed = results.get("fixed")
    if not fixed:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, runs in fixed.items():
        good = _ok_runs(runs)
        if not good or not good[-1].get("latencies_ms"):
            continue
        lat, offered = good[-1]["latencies_ms"], good[-1]["offered"]
        ax.plot(lat, [(i + 1) / offered for i in range(len(lat))], label=name,
                color=COLOURS.get(name))
    ax.set_xscale("log")
    ax.set_xlabel("latency from scheduled start, ms (log)")
    ax.set_ylabel("fraction of requests offered answered right")
    rate = (results.get("plans") or {}).get("fixed", results["plan"])["fixed_rate"]
    ax.set_title(f"W1 at {rate:,.0f} req/s offered", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "latency_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def probe(results: dict[str, Any], out: Path) -> Path | None:
    """``GET /healthz`` latency over time during W1 saturation (last run of each target)."""
    w1 = results.get("w1")
    if not w1:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, runs in w1.items():
        good = [r for r in _ok_runs(runs) if r.get("probe_series")]
        if good:
            series = good[-1]["probe_series"]
            ax.plot([t for t, _ in series], [lat for _, lat in series], label=name,
                    color=COLOURS.get(name), linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("/healthz latency, ms (log)")
    ax.set_title("Probe every 10 ms while 64 clients saturate W1", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "probe.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the results allow."""
    made = [throughput(results, out), latency_cdf(results, out), probe(results, out)]
    return [p for p in made if p is not None]
