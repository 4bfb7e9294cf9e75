"""The OpenAPI document, checked by schemathesis against the running stack.

The schema is built from ``create_app(...).openapi()`` (the same document the server serves)
rather than with ``schemathesis.pytest.from_fixture``, whose lazy loader reads a pytest
attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from producer_api.main import create_app
from producer_api.settings import ApiSettings
from tests.producer_api.conftest import ApiStack

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
