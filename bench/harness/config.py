"""How big each workload is: the full run (``python -m bench``) and the smoke run (``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness.targets import PEERS


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one bench run."""

    quick: bool
    runs: int = 3
    guarantee_runs: int = 1
    """Rounds of the processing-guarantee comparison: each is six fresh stacks and about 150 s,
    so three would make a full run about 27 minutes instead of about 22 (bench/FINDINGS.md 41);
    ``--runs`` sets both."""
    connections: int = 64
    w1_seconds: float = 7.0
    idle_probe_seconds: float = 2.0
    ceiling_seconds: float = 3.0
    fixed_rate: float = 1_000.0
    fixed_seconds: float = 5.0
    warmup_seconds: int = 5
    """A fresh stack gets this long of the same load first, not counted, in W1 (wrk, which reads
    whole seconds) and at the fixed rate, the raw echo too: its broker compiles its hot paths in
    its first seconds. Not W2 (bench/FINDINGS.md 39)."""
    bulk_items: int = 200_000
    bulk_json_chunk: int = 2_000
    bulk_npy_chunk: int = 5_000
    bulk_posts_in_flight: int = 2
    worker_path_records: int = 200_000
    w2_seconds: float = 7.0
    memory_results: int = 1_000_000
    celery_direct_tasks: int = 2_000
    cache_repeat: int = 5
    peers: tuple[str, ...] = PEERS
    """The peers measured next to calcstream (``--peers``; none for calcstream alone)."""
    profile: bool = False
    """Sample the API and the worker with py-spy during the calcstream runs."""

    @classmethod
    def full(cls) -> Plan:
        """``python -m bench``: medians of 3 runs, the sizes the issue names."""
        return cls(quick=False)

    @classmethod
    def smoke(cls) -> Plan:
        """``python -m bench --quick``: one short run of everything, about a minute."""
        return cls(quick=True, runs=1, w1_seconds=2.0, idle_probe_seconds=0.5,
                   ceiling_seconds=1.0, fixed_seconds=0.5, warmup_seconds=1, bulk_items=2_000,
                   bulk_json_chunk=500, bulk_npy_chunk=1_000, worker_path_records=5_000,
                   w2_seconds=2.0, memory_results=20_000, celery_direct_tasks=100,
                   cache_repeat=1)
