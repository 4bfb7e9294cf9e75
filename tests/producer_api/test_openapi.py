"""The OpenAPI document, checked by schemathesis against the running stack.

The schema is built from ``create_app(...).openapi()`` (the same document the server serves)
rather than with ``schemathesis.pytest.from_fixture``, whose lazy loader reads a pytest
attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from producer_api.auth import is_public
from producer_api.main import create_app
from producer_api.settings import ApiSettings
from tests.producer_api.conftest import ApiStack
from tests.producer_api.tenants import Keyed, keyed_stack

schema = schemathesis.openapi.from_dict(create_app(ApiSettings()).openapi())


@schemathesis.serializer("application/x-ndjson", "application/x-npy")
def raw_body(ctx: Any, value: Any) -> bytes:
    """NDJSON and .npy bodies are documented as strings (text, binary): send them as they are."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()  # negative cases: any JSON value, big integers included

# Two checks do not fit this API by design: a schema-valid body can still be a 422, because an
# op's own rules (matmul needs m*k + k*n values, var needs more than ddof) are not expressible
# in JSON Schema; and a batch with malformed items is a 202 that lists per-item errors.
EXCLUDED: list[Any] = [positive_data_acceptance, negative_data_rejection]


# CI draws the same 100 examples per operation every run; `make nightly` draws many more, new
# ones each night (HYPOTHESIS_PROFILE=explore).
EXAMPLES = int(os.environ.get("CALCSTREAM_SCHEMATHESIS_EXAMPLES", "100"))
DERANDOMIZE = os.environ.get("HYPOTHESIS_PROFILE", "deterministic") != "explore"


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=list(HealthCheck))
# schemathesis' own path-parameter strategy trips this hypothesis deprecation.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_the_api_keeps_its_openapi_promises(case: schemathesis.Case[Any], api: ApiStack) -> None:
    case.call_and_validate(base_url=api.base_url, excluded_checks=EXCLUDED)


def test_every_operation_documents_examples_or_schemas(api: ApiStack) -> None:
    spec = httpx.get(f"{api.base_url}/openapi.json").json()
    submit = spec["paths"]["/v1/calculations"]["post"]
    body = submit["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Submission"}
    assert {"sum", "matmul"} <= set(body["examples"])
    assert set(spec["paths"]["/v1/calculations/batch"]["post"]["requestBody"]["content"]) == {
        "application/json", "application/x-ndjson", "application/x-npy"}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("summary"), (path, method)


@pytest.fixture(scope="module")
def keyed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    with keyed_stack(kafka_bootstrap, tmp_path_factory.mktemp("openapi")) as stack:
        yield stack


# With keys, the same promises hold for a caller with every scope (fewer examples: the open
# run above covers the inputs; this one the authenticated path through the same handlers).
@schema.parametrize()
@settings(max_examples=max(10, EXAMPLES // 5), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=list(HealthCheck))
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_the_promises_hold_with_a_key(case: schemathesis.Case[Any], keyed: Keyed) -> None:
    case.call_and_validate(base_url=keyed.api.base_url, excluded_checks=EXCLUDED,
                           headers={"authorization": f"Bearer {keyed.keys['everything']}"})


def test_the_bearer_scheme_is_documented_where_a_key_is_needed() -> None:
    spec = create_app(ApiSettings()).openapi()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            guarded = not is_public(path.replace("{request_id}", "id"))
            assert ("security" in op) == guarded, (method, path)
            if guarded:
                assert {"401", "403"} <= set(op["responses"]), (method, path)
