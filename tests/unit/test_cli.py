"""The `logstream` dispatcher: help, version, unknown commands, user errors as one line + exit 2."""

from pathlib import Path

import pytest

from logstream import __version__
from logstream.commands.main import COMMANDS, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"logstream {__version__}"


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_entry_point_exists() -> None:
    import importlib

    for target, _ in COMMANDS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_a_bad_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streamer", "-size", "5XB"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "-size" in err and "5XB" in err


def test_status_of_a_cluster_file_asks_supervisord(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "c.toml"
    file.write_text(f'[cluster]\nname = "t"\nrun_dir = "{tmp_path / "run"}"\n[mediator]\nport = 1\n'
                    f'[streamers]\ncount = 1\nport = 2\npath = "{tmp_path / "logs"}"\n')
    assert main(["status", str(file)]) == 1  # nothing runs: reported, not a traceback
    out = capsys.readouterr()
    assert "supervisord: not running" in out.out + out.err


@pytest.mark.parametrize("module", ["logstream", "logstream.commands.main"])
def test_both_module_entry_points_run_the_command(module: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"logstream {__version__}\n")
    unknown = subprocess.run([sys.executable, "-m", module, "nonsense"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2
