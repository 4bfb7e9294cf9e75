"""``calcstream dev``: the whole stack on one machine (Apache Kafka, topics, workers, API)."""

from calcstream.dev.stack import (
    STOP_SIGNALS,
    DevOptions,
    DevStack,
    default_data_dir,
    interrupt_on_stop,
)

__all__ = ["STOP_SIGNALS", "DevOptions", "DevStack", "default_data_dir", "interrupt_on_stop"]
