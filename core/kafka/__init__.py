"""Apache Kafka on this machine, without Docker: jars resolved by Maven, one JVM per node,
one node or a cluster of several."""

from core.kafka.cluster import EmbeddedCluster
from core.kafka.errors import EmbeddedKafkaError, KafkaSetupError, KafkaStartError
from core.kafka.jars import kafka_version
from core.kafka.node import EmbeddedKafka, wipe_data_dir

__all__ = ["EmbeddedCluster", "EmbeddedKafka", "EmbeddedKafkaError", "KafkaSetupError",
           "KafkaStartError", "kafka_version", "wipe_data_dir"]
