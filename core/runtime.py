"""Process-wide set-up for the entry points: how often the garbage collector runs.

CPython collects its youngest generation every 700 net allocations of tracked objects. A
worker batch of 512 requests, or a bulk body of thousands of items, allocates many times that,
so the collector ran dozens of times per batch, and its older generations kept re-scanning
everything the process imported at start-up. Freezing what start-up created and collecting the
youngest generation every ``gen0`` allocations made the worker path 13–31% faster in two
alternating A/Bs (bench/FINDINGS.md, finding 5). Reference cycles are still collected, only
in larger steps.
"""

from __future__ import annotations

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
