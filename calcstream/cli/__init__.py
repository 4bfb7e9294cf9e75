"""The ``calcstream`` command: the local stack, the worker, the broker, and tools that talk to
Kafka or to the API directly (ingest, tail, submit)."""

from calcstream.cli.main import main

__all__ = ["main"]
