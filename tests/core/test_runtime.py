"""Process set-up in a fresh interpreter (it changes process-wide state): ``tune_gc`` freezes
start-up objects, collects the young generation less often and still frees reference cycles;
``limit_blas_threads`` caps the BLAS library's threads."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

SCRIPT = """
import gc, sys, weakref, orjson
from core.runtime import tune_gc
before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
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
                    "frozen": gc.get_freeze_count() - frozen_before, "alive": alive}).decode())
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
    assert got["frozen"] == 0  # none beyond what the interpreter froze itself (3.12.1: 375)


BLAS = """
import sys, orjson
import numpy as np
from threadpoolctl import threadpool_info
from core.runtime import limit_blas_threads

def threads():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

before = threads()
limit_blas_threads(int(sys.argv[1]))
after = threads()
a = np.random.default_rng(0).standard_normal((200, 200))
print(orjson.dumps({"before": before, "after": after,
                    "right": bool(np.allclose(a @ np.eye(200), a))}).decode())
"""


def _blas(threads: int) -> dict[str, list[int]]:
    # Two threads by default whatever the machine, so that one is a change.
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")},
           "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", BLAS, str(threads)], capture_output=True,
                         check=True, timeout=60, env=env)
    result: dict[str, list[int]] = orjson.loads(out.stdout)
    return result


def test_blas_runs_on_as_many_threads_as_asked() -> None:
    got = _blas(1)
    assert got["before"] == [2] and got["after"] == [1] and got["right"]
    assert _blas(0)["after"] == got["before"]


TRIM = """
import orjson
from core.runtime import release_free_memory

def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

# 100 MB in 2 KB blocks (malloc's, not Python's small-object arenas); every 50th kept, so the
# heap cannot shrink from its top and the free pages stay resident inside it.
blocks = [bytes(2048) for _ in range(50_000)]
kept = blocks[::50]
del blocks
before = resident()
released = release_free_memory()
freed = before - resident()
print(orjson.dumps({"released": released, "freed": freed, "kept": len(kept)}).decode())
"""


def test_free_pages_inside_the_heap_are_given_back() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, check=True,
                         timeout=60)
    got = orjson.loads(out.stdout)
    assert got["released"] and got["kept"] == 1000
    assert got["freed"] > 50 * 2**20, got  # most of the 98 MB freed
