"""Reading request files: pure, no broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from calcstream.cli.errors import InputError
from calcstream.cli.sources import Outgoing, Rejected, open_source
from schemas.encoding import BINARY, decode_request


def test_csv_header_blank_rows_and_bad_cells(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n1,2\n\n3,oops\n4,inf\n5,6,7\n")

    items = list(open_source(path, op="sum", id_prefix="r"))

    assert [i.id for i in items if isinstance(i, Outgoing)] == ["r-2", "r-6"]
    assert [(i.where, i.reason.split(":")[0]) for i in items if isinstance(i, Rejected)] == [
        ("row 4", "not a number"), ("row 5", "data contains NaN or Infinity")]
    assert orjson.loads(items[-1].value)["data"] == [5.0, 6.0, 7.0]  # type: ignore[union-attr]


def test_ndjson_defaults_and_op_checks(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text('{"data": [1, 2]}\n[1]\n{"id": "mine", "data": [1, 2, 3], "op": "dot"}\n')

    items = list(open_source(path, op="mean", id_prefix="p"))

    first = items[0]
    assert isinstance(first, Outgoing) and first.id == "p-1"
    assert orjson.loads(first.value)["op"] == "mean"
    assert items[1] == Rejected("line 2", "not a JSON object")
    assert isinstance(items[2], Rejected) and "even count" in items[2].reason


def test_npy_rows_are_binary_frames(tmp_path: Path) -> None:
    path = tmp_path / "rows.npy"
    np.save(path, np.arange(6, dtype=np.int32).reshape(3, 2))

    items = list(open_source(path, op="dot", id_prefix="n"))

    assert all(isinstance(i, Outgoing) and i.content_type == BINARY for i in items)
    decoded = decode_request(items[2].value, BINARY)  # type: ignore[union-attr]
    assert decoded.fields.id == "n-3" and decoded.data.tolist() == [4.0, 5.0]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("x.txt", b"", {"op": "sum"}, "cannot tell the format"),
        ("x.csv", b"1\n", {}, "--op is required"),
        ("x.csv", b"1\n", {"op": "nope"}, "unknown op"),
        ("x.csv", b"1\n", {"op": "var", "args": {"ddof": -1}}, "args.ddof"),
        ("x.npy", None, {"op": "dot"}, "2-D array"),
        ("x.csv", b"1\n", {"op": "sum", "id_prefix": "no spaces"}, "--id-prefix"),
    ],
)
def test_unusable_input_fails_before_sending(tmp_path: Path, name: str, content: bytes | None,
                                             kwargs: dict[str, object], message: str) -> None:
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros(4))
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        open_source(path, **kwargs)  # type: ignore[arg-type]
