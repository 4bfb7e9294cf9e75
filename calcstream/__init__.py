"""calcstream: CPU-heavy NumPy work behind an async API, with Kafka in the middle."""

__version__ = "0.1.0"
