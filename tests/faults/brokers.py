"""A dedicated embedded broker that refuses every write to chosen topics.

Tansu validates records against a JSON schema per topic when started with a schema registry
(``<topic>.json`` in a directory; its ``properties.value`` applies to record values). A value
schema that nothing satisfies (``{"not": {}}``) makes the broker answer every produce to that
topic with an error, while every other topic works: a topic
that exists but cannot be written, as a broker policy, a full disk or a missing ACL would make
it. The registry is read once, so the refusal lasts as long as the broker runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from calcstream.broker import free_port, port_open, tansu_binary

REFUSE_EVERYTHING = {"type": "object", "properties": {"value": {"not": {}}}}


class RefusingBroker:
    """``with RefusingBroker(["topic"]) as broker:`` → ``broker.bootstrap_servers``."""

    def __init__(self, refused_topics: Iterable[str]) -> None:
        self.refused_topics = list(refused_topics)
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="calcstream-schemas-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> RefusingBroker:
        registry = Path(self._dir.name)
        for topic in self.refused_topics:
            (registry / f"{topic}.json").write_text(json.dumps(REFUSE_EVERYTHING))
        url = f"tcp://{self.bootstrap_servers}"
        # Tansu resolves file:// registries against its working directory.
        self._proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
             "--schema-registry", f"file://.{registry}"],
            cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"},
        )
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the refusing broker did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        self._dir.cleanup()
