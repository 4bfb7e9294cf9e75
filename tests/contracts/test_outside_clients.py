"""The client scripts in docs/outside-clients.md, run as written against a broker and a worker.

Every fenced ``python`` block on that page starts with ``# <file name>.py``; this test writes each
block to that file and runs it, so the documentation cannot drift from what works.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.kafka import Deployment
from tests.stack import environment

DOC = Path(__file__).parents[2] / "docs" / "outside-clients.md"
_BLOCK = re.compile(r"^```python\n(# (\w+\.py)\b.*?)^```$", re.MULTILINE | re.DOTALL)
EXPECTED = {"json-1": "ok 14.0", "bin-1": "ok [[19.0, 22.0], [43.0, 50.0]]"}


def snippets() -> dict[str, str]:
    """File name → code of every python block of the page."""
    return {m.group(2): m.group(1) for m in _BLOCK.finditer(DOC.read_text())}


def _run_together(dep: Deployment, commands: dict[str, list[str]]) -> dict[str, str]:
    """Run scripts side by side; return each one's stdout, failing on any non-zero exit."""
    procs: dict[str, subprocess.Popen[str]] = {}
    outputs: dict[str, tuple[int, str, str]] = {}
    try:
        for name, argv in commands.items():
            procs[name] = subprocess.Popen([sys.executable, *argv], env=environment(dep),
                                           text=True, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE)
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            outputs[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for name, (code, _, err) in outputs.items():
        assert code == 0, (name, err)
    return {name: out for name, (_, out, _) in outputs.items()}


def test_the_page_has_every_client() -> None:
    assert set(snippets()) == {"aiokafka_producer.py", "aiokafka_results.py",
                               "confluent_producer.py", "confluent_results.py"}


def test_producers_and_readers_as_documented(served: Deployment, tmp_path: Path) -> None:
    files = {}
    for name, code in snippets().items():
        files[name] = tmp_path / name
        files[name].write_text(code)

    libs = ("aiokafka", "confluent")
    sent = _run_together(served, {lib: [str(files[f"{lib}_producer.py"])] for lib in libs})
    for lib in libs:
        assert sent[lib] == f"sent {lib}-json-1 {lib}-bin-1\n"

    read = _run_together(served, {
        lib: [str(files[f"{lib}_results.py"]), *(f"{lib}-{k}" for k in EXPECTED)] for lib in libs
    })
    for lib in libs:
        assert sorted(read[lib].splitlines()) == sorted(f"{lib}-{k} {v}"
                                                        for k, v in EXPECTED.items())

    # The page's sample session shows exactly what the aiokafka scripts printed.
    session = re.search(r"^```console\n(.*?)^```$", DOC.read_text(), re.M | re.S)
    assert session is not None
    shown = [line for line in session.group(1).splitlines() if not line.startswith("$ ")]
    assert shown[0] == sent["aiokafka"].strip()
    assert sorted(shown[1:]) == sorted(read["aiokafka"].splitlines())  # any arrival order
