"""calcstream's benchmark suite: the real stack against the usual recipes, side by side.

``python -m bench`` starts every peer as its own process on 127.0.0.1, runs the workloads,
and writes ``bench/results/REPORT.md``, ``results.json`` and the plots there. Nothing in the
product imports this.

- ``harness/``: what every measurement uses (processes, the stack, load generators, bodies);
- ``peers/``: the recipes calcstream is compared with;
- ``workloads/``: the suite's measurements, run by ``runner.py``;
- ``tools/``: one question each, ``python -m bench.tools.<name>``;
- ``report/``: REPORT.md and the plots from a run's figures;
- ``results/``: every output; ``FINDINGS.md`` (written by hand) stays beside the code.
"""
