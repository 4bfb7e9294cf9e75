"""Hypothesis strategies for the wire models."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from schemas.messages import ID_CHARACTERS, ID_MAX_LENGTH, CalcRequest, RequestFields

IDS = st.from_regex(rf"\A[{ID_CHARACTERS}]{{1,{ID_MAX_LENGTH}}}\Z")
OPS = st.text(min_size=1, max_size=64)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
TIMES = st.none() | st.floats(0, 4e9)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | FINITE | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8,
)
ARGS = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4)


def request_fields(**overrides: Any) -> st.SearchStrategy[RequestFields]:
    """Valid request metadata."""
    return st.builds(RequestFields, id=IDS, op=OPS, args=ARGS, deadline=TIMES,
                     submitted_at=TIMES, **overrides)


def calc_requests() -> st.SearchStrategy[CalcRequest]:
    """Valid JSON requests."""
    return st.builds(CalcRequest, id=IDS, op=OPS, args=ARGS, deadline=TIMES, submitted_at=TIMES,
                     data=st.lists(FINITE, min_size=1, max_size=50))
