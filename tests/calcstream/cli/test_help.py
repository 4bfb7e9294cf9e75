"""Every command explains itself."""

from __future__ import annotations

import pytest

from calcstream.cli import main


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ("ingest", ["NDJSON", "CSV", ".npy", "--results", "--timeout", "--bootstrap",
                    "exit codes"]),
        ("tail", ["--status", "--op", "--dlq", "--from-beginning", "--bootstrap"]),
        ("submit", ["OP", "DATA", "--args", "--timeout", "--json", "exit codes"]),
        ("asyncapi", ["--out", "--check"]),
        ("dev", ["--broker-port", "--workers"]),
    ],
)
def test_help(command: str, mentions: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for word in mentions:
        assert word in text, word


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("ingest", "tail", "submit", "asyncapi", "dev", "worker", "ops"):
        assert command in text
