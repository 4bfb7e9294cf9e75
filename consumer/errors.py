"""Errors of the worker.

    ConsumerError
    ├── NotStartedError   a client was used before start()
    └── MissingTopic      a topic the worker needs does not exist, and it may not create it
"""


class ConsumerError(Exception):
    """Base of the worker's errors."""


class NotStartedError(ConsumerError, RuntimeError):
    """A client was used before ``start()`` (or after ``stop()``)."""


class MissingTopic(ConsumerError):
    """A topic the worker needs does not exist, and ``create_topics`` is off."""
