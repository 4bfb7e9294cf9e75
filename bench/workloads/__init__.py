"""The suite's measurements, one module per thing measured; ``bench.runner`` runs them.

``saturation`` (wrk against one target: W1, W2, the load generators' ceiling), ``fixed_rate``
(W1 offered open loop), ``w1_stream`` (W1 as 202 + WebSocket results), ``bulk`` (the batch
endpoint), ``worker_path`` (the worker alone against a raw echo), ``api_memory`` (the API's
RSS with a full result store), ``result_cache`` (the worker's cache hit path).
"""
