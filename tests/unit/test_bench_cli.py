"""`logstream bench`'s arguments go through the one flag parser: a mistake is one line and exit 2,
before anything starts; abbreviations are not expanded (as for every other command)."""

from __future__ import annotations

from pathlib import Path

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
    ["--mediators", "2"],  # comparing routing tiers needs the streamers: --cluster N
    ["--cluster", "2", "--mediators", "1,x"],
    ["--cluster", "2", "--mediators", "-1"],
    ["--cluster", "2", "--mediators", "0,0"],  # the embedded mediator twice
    ["--cluster", "2", "--mediators", "1", "--embedded"],  # M = 1 without etcd mode is the embedded one
    ["--cluster", "2", "--workers", "1"],  # one worker is --mediators 1
    ["--cluster", "2", "--mediators", "2", "--clients", "1"],  # a mediator without a client
    ["--cluster", "2", "--move-keys", "10"],  # no etcd-mode setup to move keys in
    ["--cluster", "1", "--mediators", "2", "--move-keys", "10"],  # one streamer: nowhere to move to
    ["--cluster", "2", "--mediators", "2", "--move-rounds", "0"],
    ["--target", "127.0.0.1:1", "--mediators", "2"],
])
def test_bench_usage_errors_are_one_line_and_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["bench", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("logstream bench: error: ")


def test_etcd_mode_without_an_etcd_program_is_one_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no etcd (nor anything else) to find
    assert cli(["bench", "--cluster", "2", "--mediators", "0,2", "--seconds", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("logstream bench: error: ") and "etcd" in err
    assert not list(tmp_path.iterdir())
