"""The op registry: every op's batch kernel agrees with its reference; args and shapes parse."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import ops
from consumer.ops import REGISTRY, OpInputError, UnknownOpError
from schemas.ops import CATALOGUE, catalogue
from tests.consumer.op_cases import CASES, batches, case, requests


def test_every_registered_op_has_a_test_case() -> None:
    assert set(REGISTRY) == set(CASES), "tests/consumer/op_cases.py is out of step with REGISTRY"


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_batch_kernel_equals_the_reference_one_at_a_time(name: str, data: st.DataObject) -> None:
    op = REGISTRY[name]
    spec = case(name)
    raw = data.draw(batches(name), label="batch")
    arrays = [x for x, _ in raw]
    args = [op.parse(x.size, a) for x, a in raw]

    got = op.batch(arrays, args)

    assert len(got) == len(raw)
    for i, (x, a, value) in enumerate(zip(arrays, args, got, strict=True)):
        want = op.reference(x, a)
        assert spec.close(x, a, value, want), f"request {i} of {len(raw)}: {value!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_generated_requests_are_valid_for_their_op(name: str, data: st.DataObject) -> None:
    x, raw_args = data.draw(requests(name))
    REGISTRY[name].parse(x.size, raw_args)


def test_get_unknown_op_names_the_op_field_and_lists_the_known_ops() -> None:
    with pytest.raises(UnknownOpError) as info:
        ops.get("no_such_op")
    assert info.value.field == "op"
    assert "no_such_op" in info.value.message
    assert all(name in info.value.message for name in REGISTRY)
    assert isinstance(info.value, OpInputError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("name", "size", "args", "field", "fragment"),
    [
        ("matmul", 4, {}, "args.m", "required"),
        ("matmul", 4, {"m": 1, "k": 2}, "args.n", "required"),
        ("matmul", 4, {"m": 0, "k": 1, "n": 1}, "args.m", "greater than or equal to 1"),
        ("matmul", 4, {"m": 1, "k": 1, "n": 1}, "data", "needs m*k + k*n = 2 values, got 4"),
        ("matmul", 4, {"m": 1, "k": 1, "n": 1, "p": 2}, "args.p", "not permitted"),
        ("dot", 3, {}, "data", "even count"),
        ("inv", 5, {}, "data", "square count"),
        ("var", 3, {"ddof": 3}, "data", "needs more than ddof=3 values, got 3"),
        ("std", 1, {"ddof": 1}, "data", "needs more than ddof=1 values, got 1"),
        ("var", 3, {"ddof": -1}, "args.ddof", "greater than or equal to 0"),
        ("std", 3, {"ddof": "x"}, "args.ddof", "integer"),
        ("sum", 3, {"ddof": 1}, "args.ddof", "not permitted"),
    ],
)
def test_parse_errors_name_the_field(
    name: str, size: int, args: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(OpInputError) as info:
        REGISTRY[name].parse(size, args)
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(info.value) == f"{field}: {info.value.message}"


def test_parse_returns_the_op_args() -> None:
    assert REGISTRY["matmul"].parse(8, {"m": 2, "k": 2, "n": 2}) == ops.MatmulArgs(m=2, k=2, n=2)
    assert REGISTRY["var"].parse(2, {}) == ops.DdofArgs(ddof=0)
    assert REGISTRY["std"].parse(2, {"ddof": 1}).ddof == 1  # type: ignore[attr-defined]
    assert REGISTRY["sum"].parse(1, {}) == ops.OpArgs()


def test_every_op_of_the_catalogue_has_a_kernel_and_every_kernel_an_op() -> None:
    assert set(REGISTRY) == set(CATALOGUE)
    for name, spec in CATALOGUE.items():
        bound = REGISTRY[name]
        assert (bound.summary, bound.args, bound.check, bound.cached) == \
            (spec.summary, spec.args, spec.check, spec.cached)


def test_catalogue_lists_every_op_by_name_with_an_args_schema() -> None:
    listing = catalogue()
    assert [entry["name"] for entry in listing] == sorted(REGISTRY)
    for entry in listing:
        assert set(entry) == {"name", "summary", "args", "cached"}
        assert entry["cached"] is REGISTRY[entry["name"]].cached
        assert entry["summary"]
        assert entry["args"]["type"] == "object"
        assert entry["args"]["additionalProperties"] is False
    by_name = {entry["name"]: entry for entry in listing}
    assert set(by_name["matmul"]["args"]["required"]) == {"m", "k", "n"}
    assert by_name["var"]["args"]["properties"]["ddof"]["minimum"] == 0
    assert by_name["std"]["args"]["properties"]["ddof"]["default"] == 0
    assert by_name["sum"]["args"].get("properties", {}) == {}
    assert {"sum_of_squares", "sum", "mean", "std", "var", "min", "max", "l2_norm", "dot",
            "matmul"} <= set(by_name)


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ops.register(REGISTRY["sum"])
