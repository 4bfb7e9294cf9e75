"""The worker: consume requests, micro-batch, compute in a thread, publish results, commit."""
