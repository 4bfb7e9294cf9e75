"""``calcstream dev``: the whole stack on one machine (Apache Kafka, topics, workers, API)."""

from calcstream.dev.stack import DevOptions, DevStack, default_data_dir

__all__ = ["DevOptions", "DevStack", "default_data_dir"]
