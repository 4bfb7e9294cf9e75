"""Errors of the worker.

    ConsumerError
    └── NotStartedError   a client was used before start()
"""


class ConsumerError(Exception):
    """Base of the worker's errors."""


class NotStartedError(ConsumerError, RuntimeError):
    """A client was used before ``start()`` (or after ``stop()``)."""
