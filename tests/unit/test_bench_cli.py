"""`logstream bench`'s arguments go through the one flag parser: a mistake is one line and exit 2,
before anything starts; abbreviations are not expanded (as for every other command)."""

from __future__ import annotations

import pytest

from logstream.commands.main import main as cli


@pytest.mark.parametrize("args", [
    ["--seconds", "soon"],
    ["--mode", "teleport"],
    ["--keys", "3", "--files", "2"],
    ["--target", "127.0.0.1:1", "--cluster", "2"],
    ["--sec", "1"],  # no abbreviation of --seconds
    ["--no-such-flag"],
    ["--cluster", "2", "--mode", "ping"],  # a mediator has no Ping: refused before starting anything
    ["--mode", "open"],  # the open loop needs its rate
    ["--rate", "-5"],
    ["--mode", "batch", "--rate", "1000"],  # a rate for a closed-loop mode would be ignored
])
def test_bench_usage_errors_are_one_line_and_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["bench", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("logstream bench: error: ")
