"""celery: the Celery app and its task (Redis broker and result backend; the third recipe).

The worker runs as ``celery -A bench.peers.celery_app worker --pool prefork --concurrency 2``;
``BENCH_REDIS_URL`` names the Redis database (the bench picks a spare one).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from bench.peers.common import compute as _compute

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.compute")  # type: ignore[untyped-decorator]
def compute(op: str, data: list[float], args: dict[str, Any]) -> Any:
    """The bench op, returned as JSON-able data."""
    value = _compute(op, data, args)
    return value if isinstance(value, float) else value.tolist()
