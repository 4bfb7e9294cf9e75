"""What operators get (deploy/): Prometheus' config and alert rules pass promtool (checks and
the rules' own unit tests), and every metric the rules and the Grafana dashboard read is one
the API or the worker exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumer.metrics import WorkerCollector
from consumer.stats import WorkerStats
from producer_api.metrics import registry
from producer_api.reader import ResultReader
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats
from producer_api.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bcalcstream_[a-z0-9_]+")


def promtool(*argv: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return subprocess.run([tool, *argv], capture_output=True, text=True, check=False,
                          cwd=DEPLOY / "prometheus", timeout=60)


@pytest.mark.parametrize("argv", [("check", "rules", "alerts.yml"),
                                  ("check", "config", "prometheus.yml"),
                                  ("test", "rules", "alerts.test.yml")])
def test_promtool_accepts_the_config_and_the_rules(argv: tuple[str, ...]) -> None:
    done = promtool(*argv)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_would_catch_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: up ==\n")
    assert promtool("check", "rules", str(broken)).returncode != 0


def exported() -> set[str]:
    """Every sample name the API and the worker expose (histograms with their suffixes)."""
    stats = WorkerStats()
    stats.consumer_lag[("calc.requests", 0)] = 0  # a partition owned: its gauge is written
    worker = CollectorRegistry()
    worker.register(WorkerCollector(stats, "w"))
    api = ApiStats()  # one of each labelled count, so that its samples are written
    api.refused[("submit", 503, "overloaded")] += 1
    api.single.rejected[(503, "broker_unavailable")] += 1
    # A replica's reader and store, not started: their gauges are written all the same.
    store = ResultStore(10, 1 << 20, 60.0)
    services = SimpleNamespace(store=store, reader=ResultReader(ApiSettings(), store),
                               hub=SimpleNamespace(streaming=0), forwarder=None)
    text = (generate_latest(registry(api, SimpleNamespace(services=services), "api"))
            + generate_latest(worker)).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line.startswith("calcstream_")}


def referenced() -> dict[str, set[str]]:
    """File → the calcstream metric names its expressions read."""
    dashboard = json.loads((DEPLOY / "grafana" / "calcstream.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {"alerts.yml": set(METRIC.findall((DEPLOY / "prometheus" / "alerts.yml").read_text())),
            "calcstream.json": set(METRIC.findall(" ".join(exprs)))}


def test_every_metric_the_rules_and_the_dashboard_read_exists() -> None:
    names = exported()
    for source, used in referenced().items():
        assert used, source
        assert used <= names, f"{source} reads metrics nobody exports: {sorted(used - names)}"


def test_the_dashboard_is_one_grafana_can_load() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "calcstream.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "calcstream"
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
