"""The AsyncAPI document: in sync with the models, valid AsyncAPI 3.0, and it says what it should.

``asyncapi-3.0.0.schema.json`` is the official AsyncAPI 3.0.0 JSON Schema, copied unchanged from
the ``@asyncapi/specs`` package (6.11.1, ``schemas/3.0.0-without-$id.json``, Apache-2.0).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from calcstream.cli import main
from schemas.asyncapi import build
from schemas.encoding import BINARY, CONTENT_TYPE_HEADER
from schemas.messages import DLQ_HEADER_PREFIX, CalcRequest, CalcResult, DeadLetterHeaders
from schemas.topics import Topics

COMMITTED = Path(__file__).parents[2] / "schemas" / "asyncapi.json"
SPEC = json.loads(Path(__file__).with_name("asyncapi-3.0.0.schema.json").read_text())


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text())
    return loaded


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _validator(doc: dict[str, Any], ref: str) -> jsonschema.Draft7Validator:
    """A validator for the schema at ``ref``, resolving references within the document."""
    return jsonschema.Draft7Validator({"$ref": ref, "components": doc["components"]})


def test_committed_file_is_in_sync(doc: dict[str, Any]) -> None:
    assert main(["asyncapi", "--out", str(COMMITTED), "--check"]) == 0, \
        "schemas/asyncapi.json is stale: run `calcstream asyncapi`"
    assert doc == build()


def test_is_valid_asyncapi_3(doc: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(SPEC)
    assert doc["asyncapi"] == "3.0.0"
    validator.validate(doc)
    broken = copy.deepcopy(doc)
    broken["operations"]["consumeRequests"]["action"] = "subscribe"  # the 2.x word
    assert not validator.is_valid(broken)


def test_references_resolve_and_operations_use_their_channels_messages(
    doc: dict[str, Any]
) -> None:
    for ref in _refs(doc):
        _resolve(doc, ref)
    assert {c["address"] for c in doc["channels"].values()} == set(Topics().all())
    for name, operation in doc["operations"].items():
        channel = operation["channel"]["$ref"]
        assert operation["messages"], name
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), (name, message)
    assert {(op["action"], _resolve(doc, op["channel"]["$ref"])["address"])
            for op in doc["operations"].values()} == {
        ("receive", "calc.requests"), ("send", "calc.results"), ("send", "calc.dlq")}


def test_messages_carry_payloads_and_headers(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    for name, message in messages.items():
        assert "payload" in message, name
        assert message["bindings"]["kafka"]["key"], name
    assert CONTENT_TYPE_HEADER in messages["CalcRequest"]["headers"]["properties"]
    binary = messages["CalcRequestBinary"]["headers"]
    assert binary["required"] == [CONTENT_TYPE_HEADER]
    assert binary["properties"][CONTENT_TYPE_HEADER]["const"] == BINARY
    dlq = messages["DeadLetter"]["headers"]
    assert set(dlq["properties"]) == {DLQ_HEADER_PREFIX + f
                                      for f in DeadLetterHeaders.model_fields}
    assert DLQ_HEADER_PREFIX + "request_id" not in dlq["required"]
    assert DLQ_HEADER_PREFIX + "stage" in dlq["required"]


def test_payload_and_header_schemas_accept_real_records(doc: dict[str, Any]) -> None:
    request = CalcRequest(id="r-1", op="matmul", data=[1, 2, 3, 4], args={"m": 1, "k": 2, "n": 1})
    result = CalcResult(id="r-1", status="error", op="inv", worker="w", batch_size=3,
                        enqueued_at=1.0, completed_at=2.0, queue_ms=1.0, compute_ms=0.1,
                        error={"code": "singular_matrix", "message": "Singular matrix"})
    headers = DeadLetterHeaders(
        original_topic="calc.requests", original_partition=2, original_offset=17,
        original_timestamp=1767225600000, consumer_group="g", error_class="DecodeError",
        error_message="not valid JSON", stage="decode", worker="w",
    ).to_headers()

    requests = _validator(doc, "#/components/messages/CalcRequest/payload")
    requests.validate(request.model_dump(mode="json"))
    assert not requests.is_valid({**request.model_dump(mode="json"), "extra": 1})
    _validator(doc, "#/components/messages/CalcResult/payload").validate(
        result.model_dump(mode="json"))
    dlq = _validator(doc, "#/components/messages/DeadLetter/headers")
    dlq.validate({k: v.decode() for k, v in headers})
    assert not dlq.is_valid({k: v.decode() for k, v in headers if k != "dlq.stage"})
    for message in doc["components"]["messages"].values():
        for example in message.get("examples", []):
            jsonschema.Draft7Validator(
                {**message["payload"], "components": doc["components"]}
            ).validate(example["payload"])
