"""Errors of the worker.

    ConsumerError
    ├── NotStartedError   a client was used before start()
    ├── MissingTopic      a topic the worker needs does not exist, and it may not create it
    └── ClientStalled     a Kafka client's metadata task ended: it would never recover
"""


class ConsumerError(Exception):
    """Base of the worker's errors."""


class NotStartedError(ConsumerError, RuntimeError):
    """A client was used before ``start()`` (or after ``stop()``)."""


class MissingTopic(ConsumerError):
    """A topic the worker needs does not exist, and ``create_topics`` is off."""


class ClientStalled(ConsumerError):
    """A Kafka client's metadata task ended while the worker runs. aiokafka's clients wait on
    that task for every metadata refresh and coordinator lookup, so the worker would stop
    heartbeating, committing and fetching without a word; it stops instead, to be seen and
    restarted."""
