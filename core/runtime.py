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

glibc's malloc serves a block from the heap unless it is at least a threshold, and raises that
threshold to the size of every mapped block freed (up to 32 MiB), keeping twice as much free at
the heap's top. A long-lived process that once frees a large block (the API's result index when
it is rebuilt, a bulk body) then keeps tens of MiB it no longer uses: the API holding 1,000,000
results stood at 163-171 MiB with glibc's sliding threshold and at 150 with it fixed at 4 MiB
(bench/FINDINGS.md, finding 22).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

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


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def fix_malloc_thresholds(mmap_bytes: int) -> bool:
    """Have glibc's malloc map every block of ``mmap_bytes`` or more on its own (and give it
    back when freed) and return free heap beyond twice that, instead of raising both as large
    blocks come and go. 0, or a C library other than glibc, leaves malloc as it is. True if
    set."""
    if mmap_bytes <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        logger.debug("no mallopt in this C library: malloc thresholds left as they are")
        return False
    fixed = bool(mallopt(_M_MMAP_THRESHOLD, mmap_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * mmap_bytes))
    logger.debug("malloc: blocks of %d bytes or more mapped on their own: %s", mmap_bytes, fixed)
    return fixed
