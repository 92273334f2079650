"""`logstream status` and the cluster commands' help, as a new user meets them: no arguments names both
forms, both `--json` forms print alike, and every positional argument has help text."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from logstream.commands.main import main


def test_status_without_arguments_names_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "status FILE" in err and "status -mediator HOST:PORT" in err


def test_status_file_json_is_indented_and_sorted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "c.toml"
    file.write_text(f'[cluster]\nname = "t"\nrun_dir = "{tmp_path / "run"}"\n[mediator]\nport = 1\n'
                    f'[streamers]\ncount = 1\nport = 2\npath = "{tmp_path / "logs"}"\n')
    assert main(["status", str(file), "--json"]) == 1  # nothing runs
    out = capsys.readouterr().out
    assert out == json.dumps(json.loads(out), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize(("command", "argument"), [(["restart"], "NODE"), (["config"], "FILE"), (["stop"], "FILE")])
def test_positional_arguments_have_help(command: list[str], argument: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    section = out.split("positional arguments:")[1]
    line = next(line for line in section.splitlines() if line.strip().startswith(argument))
    assert len(line.strip()) > len(argument) + 5, f"no help for {argument}: {line!r}"


def test_no_tracked_file_is_ignored() -> None:
    root = Path(__file__).resolve().parents[2]
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-ci", "--exclude-standard"],
                                capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    assert listed.stdout == ""
