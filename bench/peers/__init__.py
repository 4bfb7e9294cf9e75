"""The peers: small, honest FastAPI apps computing what calcstream computes, the usual ways.

Every peer parses the body with orjson straight into NumPy (not FastAPI's typed-body path, which
costs ~300 µs per 1,000-float request), so the comparison is with a well-written recipe, not
with a strawman. Each answers ``GET /healthz`` for the latency probe.
"""
