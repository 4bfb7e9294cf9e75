"""Process-wide set-up for the entry points: how often the garbage collector runs, and how
many threads the BLAS library behind NumPy may use.

CPython collects its youngest generation every 700 net allocations of tracked objects. A
worker batch of 512 requests, or a bulk body of thousands of items, allocates many times that,
so the collector ran dozens of times per batch, and its older generations kept re-scanning
everything the process imported at start-up. Freezing what start-up created and collecting the
youngest generation every ``gen0`` allocations made the worker path 13–31% faster in two
alternating A/Bs (bench/FINDINGS.md, finding 5). Reference cycles are still collected, only
in larger steps.

OpenBLAS runs a matrix product on every core by default, and its threads spin while they wait
for work or for a core. A worker already computes up to ``max_in_flight`` batches at once, each
in its own thread, on cores it shares with the broker and the API: there the spinning doubled
the CPU a 300×300 product costs, and one BLAS thread per compute thread halved the worker's CPU
per W2 result (bench/FINDINGS.md, finding 19).

glibc's malloc keeps memory it no longer uses: it raises its mmap threshold to the size of every
mapped block that is freed (up to 32 MiB) and keeps up to twice that free at the heap's top, and
free pages inside the heap stay resident. The API holding 1,000,000 results stood at 160 MiB
and at 137 once ``malloc_trim`` had given the free pages back (bench/FINDINGS.md, finding 22).
Fixing the thresholds instead cost W2 with JSON bodies 15% of its rate (every 2 MB body's
buffers were faulted in afresh), so the API trims now and then instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def tune_gc(gen0: int) -> None:
    """Move every object alive now out of the collector's sight and set the youngest
    generation's threshold to ``gen0`` (0 leaves Python's thresholds as they are)."""
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, max(gen1, 50), max(gen2, 50))
    logger.debug("garbage collector: %d objects frozen, thresholds %s",
                 gc.get_freeze_count(), gc.get_threshold())


def limit_blas_threads(threads: int) -> None:
    """Let the BLAS library (OpenBLAS, MKL, BLIS) use at most ``threads`` threads per call, for
    the whole process (0 leaves its default: one per core)."""
    if threads <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    logger.debug("BLAS limited to %d thread(s) per call", threads)


def release_free_memory() -> bool:
    """Give the pages malloc holds free back to the system (glibc's ``malloc_trim``: about a
    millisecond when there is much to give back, 0.1 ms otherwise). False where the C library
    has no ``malloc_trim``, or nothing was given back."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
