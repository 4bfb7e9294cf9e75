"""``tune_gc`` in a fresh interpreter (it changes process-wide state): start-up objects are
frozen, the young generation is collected less often, and reference cycles are still freed."""

from __future__ import annotations

import subprocess
import sys

import orjson

SCRIPT = """
import gc, sys, weakref, orjson
from core.runtime import tune_gc
before = gc.get_threshold()
tune_gc(int(sys.argv[1]))

class Node:
    pass

refs = []
for _ in range(50_000):  # cycles only the collector can free
    a, b = Node(), Node()
    a.other, b.other = b, a
    refs.append(weakref.ref(a))
alive = sum(r() is not None for r in refs)
print(orjson.dumps({"before": before, "after": gc.get_threshold(),
                    "frozen": gc.get_freeze_count(), "alive": alive}).decode())
"""


def _run(gen0: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(gen0)], capture_output=True,
                         check=True, timeout=60)
    result: dict[str, object] = orjson.loads(out.stdout)
    return result


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    got = _run(20_000)
    assert got["after"][0] == 20_000  # type: ignore[index]
    assert got["frozen"] > 10_000  # type: ignore[operator]
    # Without a collection, all 50,000 would still be alive: cycles are freed, in larger steps.
    assert got["alive"] <= 20_000  # type: ignore[operator]


def test_zero_leaves_python_alone() -> None:
    got = _run(0)
    assert got["after"] == got["before"]
    assert got["frozen"] == 0
