"""``python -m bench.harness.launch MODULE [ARGS]``: a product entry point, producer overridden.

An experiment knob, never a default: ``BENCH_PRODUCER_OPTIONS='{"max_batch_size": 1048576}'``
makes ``python -m bench`` start the worker and the API through this module, which merges the
JSON object into ``BrokerSettings.producer_options()`` before running ``MODULE`` as
``__main__``. The product is untouched; the report names the override when one is set.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

import orjson

import core.settings

ENV = "BENCH_PRODUCER_OPTIONS"


def overrides() -> dict[str, Any]:
    """The producer options to merge, from ``BENCH_PRODUCER_OPTIONS`` (none when unset)."""
    raw = os.environ.get(ENV)
    if not raw:
        return {}
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise SystemExit(f"{ENV} must be a JSON object, got {raw!r}")
    return value


def main() -> None:
    """Patch the producer options, then run the module named by the first argument."""
    extra = overrides()
    original = core.settings.BrokerSettings.producer_options

    def producer_options(self: core.settings.BrokerSettings) -> dict[str, Any]:
        return {**original(self), **extra}

    core.settings.BrokerSettings.producer_options = producer_options  # type: ignore[method-assign]
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
