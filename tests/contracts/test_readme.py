"""The README's Kafka-client example, run as written against a broker and a worker.

The example is the fenced ``python`` block that starts with ``# try_it.py``; the ``console``
block after it is what it prints. The script reads its broker and topic names from the
``CALCSTREAM_*`` variables (falling back to the defaults of ``make run``), so here it runs
against fresh topics.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.kafka import Deployment
from tests.stack import environment

README = Path(__file__).parents[2] / "README.md"
_EXAMPLE = re.compile(r"^```python\n(# try_it\.py\b.*?)^```$", re.MULTILINE | re.DOTALL)
_OUTPUT = re.compile(r"^```console\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_RUN = re.compile(r"\breq-([0-9a-f]{8})\b")


def example() -> tuple[str, list[str]]:
    """The script and the output the README shows for it."""
    text = README.read_text()
    scripts = _EXAMPLE.findall(text)
    assert len(scripts) == 1, "the README has one block starting with `# try_it.py`"
    shown = _OUTPUT.search(text, text.index(scripts[0]) + len(scripts[0]))
    assert shown is not None, "a console block follows the example"
    return scripts[0], shown.group(1).splitlines()


def _run(script: Path, dep: Deployment) -> list[str]:
    done = subprocess.run([sys.executable, str(script)], env=environment(dep), text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _as_shown(lines: list[str], dep: Deployment, run: str, shown_run: str) -> list[str]:
    """Lines with this deployment's topic names and run id replaced by the README's."""
    names = {dep.topics.results: "calc.results", dep.topics.dlq: "calc.dlq", run: shown_run}
    out = []
    for line in lines:
        for name, default in names.items():
            line = line.replace(name, default)
        out.append(line)
    return sorted(out)


def test_the_example_reads_the_deployment_from_the_environment() -> None:
    script, _ = example()
    for variable in ("CALCSTREAM_BOOTSTRAP_SERVERS", "CALCSTREAM_REQUESTS_TOPIC",
                     "CALCSTREAM_RESULTS_TOPIC", "CALCSTREAM_DLQ_TOPIC"):
        assert f'os.environ.get("{variable}"' in script


def test_the_example_as_written(served: Deployment, tmp_path: Path) -> None:
    script, shown = example()
    path = tmp_path / "try_it.py"
    path.write_text(script)
    shown_match = _RUN.search("\n".join(shown))
    assert shown_match is not None

    runs = []
    # Twice on the same topics: the second run sees only its own records, not the first's.
    for _ in range(2):
        lines = _run(path, served)
        match = _RUN.search("\n".join(lines))
        assert match is not None, lines
        run = match.group(1)
        assert f"{served.topics.results} req-{run} ok 14.0" in lines
        assert f"{served.topics.results} bad-{run} error invalid_request" in lines
        assert any(line.startswith(f"{served.topics.dlq} bad-{run} dead letter: decode ")
                   for line in lines), lines
        assert _as_shown(lines, served, run, shown_match.group(1)) == sorted(shown)
        runs.append(run)
    assert runs[0] != runs[1]
