"""Every client command says in one line that the broker is down, and exits 2 within seconds."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from core.net import free_port
from tests.stack import CALCSTREAM


def test_one_line_and_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "requests.ndjson"
    source.write_text('{"op": "sum", "data": [1]}\n')
    dead = f"127.0.0.1:{free_port()}"
    commands = {
        "ingest": ["ingest", str(source), "--results", str(tmp_path / "out.ndjson")],
        "tail": ["tail"],
        "submit": ["submit", "sum", "1", "2"],
    }
    started = time.monotonic()
    procs = {
        name: subprocess.Popen([CALCSTREAM, *argv, "--bootstrap", dead], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name, argv in commands.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, (name, err)
        assert out == ""
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"calcstream {name}: no Kafka broker answered at {dead}"), err
    assert time.monotonic() - started < 10
