"""calcstream's benchmark suite: the real stack against the usual recipes, side by side.

``python -m bench`` starts every peer as its own process on 127.0.0.1, runs the workloads,
and writes ``bench/REPORT.md`` and the plots beside it. Nothing in the product imports this.
"""
