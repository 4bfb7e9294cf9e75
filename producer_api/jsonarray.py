"""A JSON array of objects parsed item by item, so a large batch body never holds the loop.

``orjson.loads`` of a 38 MB batch (2,000 requests of 1,000 floats) takes ~140 ms and holds the
GIL throughout; a thread would not help. ``items`` instead finds where each top-level object
ends and parses one object at a time, and ``parse`` hands the loop back between slices.

Finding the ends needs no tokenizer. Objects in the array are separated by ``}`` ``,`` ``{``
(whitespace allowed between). That sequence may also occur inside a string or a nested array,
so each candidate piece is parsed: a piece cut inside a string is never valid JSON (its string
is unterminated), and a valid object cannot be a proper prefix of a longer one, so a piece that
parses is exactly one item. Bodies of another shape, or with more than a few false candidates
(an adversarial string full of ``},{``), are parsed whole, as before, so the result and every
error message are those of ``orjson.loads`` on the whole body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson

SLICE_BYTES = 256 * 1024
"""Bytes parsed between two hand-backs to the loop (about a millisecond)."""
MAX_FALSE_ENDS = 16
"""Candidate ends that turned out to be inside an item before the body is parsed whole."""

_WS = b" \t\n\r"
Reader = Callable[[bytes | bytearray], Any]


async def parse(body: bytes | bytearray, read: Reader = orjson.loads) -> Any:
    """``orjson.loads(body)``, handing the loop back every ``SLICE_BYTES`` of a JSON array of
    objects; any other body is parsed at once. ``read`` reads each item of such an array from
    its text (raising ``orjson.JSONDecodeError`` when it is not JSON, as ``orjson.loads``)."""
    start = _skip(body, 0)
    first = _skip(body, start + 1)
    if body[start:start + 1] != b"[" or body[first:first + 1] != b"{":
        return orjson.loads(body)
    out: list[Any] = []
    handed_back = 0
    for item, offset in objects(body, first, read):
        out.append(item)
        if offset - handed_back >= SLICE_BYTES:
            handed_back = offset
            await asyncio.sleep(0)
    return out


def objects(body: bytes | bytearray, first: int,
            read: Reader = orjson.loads) -> Iterator[tuple[Any, int]]:
    """Each item of the array whose first object starts at ``first`` (read from its text by
    ``read``), with the offset its text ends at; ``orjson.JSONDecodeError`` (of the whole body)
    if the body is not valid JSON. Items after a fall-back to the whole parse are JSON values."""
    piece, search, false_ends, found = first, first, 0, 0
    while True:
        end = body.find(b"}", search)
        if end < 0:
            break
        after = _skip(body, end + 1)
        mark = body[after:after + 1]
        if mark == b",":
            following, last = _skip(body, after + 1), False
            if body[following:following + 1] != b"{":
                search = end + 1
                continue
        elif mark == b"]" and _skip(body, after + 1) == len(body):
            following, last = len(body), True
        else:
            search = end + 1
            continue
        try:
            item = read(body[piece:end + 1])
        except orjson.JSONDecodeError:
            false_ends += 1
            if false_ends > MAX_FALSE_ENDS:
                break
            search = end + 1
            continue
        yield item, end + 1
        found += 1
        if last:
            return
        piece = search = following
    # Not the expected shape after all: parse the whole body at once, as orjson would.
    whole = orjson.loads(body)
    for item in whole[found:]:
        yield item, len(body)


def _skip(body: bytes | bytearray, i: int) -> int:
    """The first offset at or after ``i`` that is not JSON whitespace."""
    n = len(body)
    while i < n and body[i] in _WS:
        i += 1
    return i
