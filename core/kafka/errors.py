"""What can go wrong with the embedded Apache Kafka.

    EmbeddedKafkaError (RuntimeError)
    ├── KafkaSetupError   Java or Maven missing, or the jars could not be resolved
    └── KafkaStartError   the broker exited or did not answer in time (its log says why)
"""

from __future__ import annotations


class EmbeddedKafkaError(RuntimeError):
    """The embedded Apache Kafka could not be set up or run."""


class KafkaSetupError(EmbeddedKafkaError):
    """Java or Maven is missing, or Maven could not resolve the broker's jars."""


class KafkaStartError(EmbeddedKafkaError):
    """The broker exited during start-up or did not answer a metadata request in time."""
