"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is validated against the official Compose Specification JSON schema, shipped
beside the repository in ../shared/data/compose-spec.json.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.kafka import kafka_version
from core.kafka.node import single_node_settings
from core.settings import BrokerSettings

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_file_matches_the_official_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SPEC.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_compose_file() -> None:
    schema = json.loads(SPEC.read_text())
    broken = {"services": {"kafka": {"image": "apache/kafka", "ports": {"bad": True}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_kafka_runs_in_kraft_mode_with_a_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    # The same Apache Kafka as `make run` and the tests.
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"
    max_bytes = BrokerSettings.model_fields["max_message_bytes"].default
    limit = single_node_settings(max_bytes)["message.max.bytes"]
    assert str(kafka["environment"]["KAFKA_MESSAGE_MAX_BYTES"]) == limit
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka["environment"]
    assert kafka["healthcheck"]["test"]


@pytest.mark.parametrize("service", ["worker", "api"])
def test_services_wait_for_a_healthy_broker(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert spec["environment"]["CALCSTREAM_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert spec["build"] == "."


def test_workers_are_replicated(compose: dict[str, Any]) -> None:
    assert compose["services"]["worker"]["deploy"]["replicas"] >= 2


def test_dockerfile_installs_every_package_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert "core" in packages
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile


def test_the_image_holds_the_tracing_extra() -> None:
    """CALCSTREAM_TRACING=otlp needs the `tracing` extra; an image without it fails at start."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "tracing" in project["optional-dependencies"]
    install = next(line for line in dockerfile.splitlines() if line.startswith("RUN pip install"))
    assert '".[tracing]"' in install
