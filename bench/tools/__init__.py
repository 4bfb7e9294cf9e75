"""Tools for one question each, outside the suite: ``python -m bench.tools.<name>``.

Each prints its figures; bench/FINDINGS.md names the command behind every figure it quotes.
"""
