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


def test_a_missing_server_module_is_told_apart_from_other_import_errors() -> None:
    from logstream.commands.main import server_module_missing

    assert server_module_missing(ModuleNotFoundError("x", name="pydantic.fields")) == "pydantic"
    assert server_module_missing(ModuleNotFoundError("x", name="supervisor")) == "supervisor"
    assert server_module_missing(ModuleNotFoundError("x", name="left_pad")) is None  # a real bug: raised
    assert server_module_missing(ModuleNotFoundError("x")) is None
    assert server_module_missing(ImportError("x", name="pydantic")) is None  # installed but broken


def test_a_command_missing_the_server_extra_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    import types

    module = types.ModuleType("fake_server_command")

    def needs_cryptography(argv: list[str]) -> int:
        raise ModuleNotFoundError("No module named 'cryptography'", name="cryptography")

    def needs_a_typo(argv: list[str]) -> int:
        raise ModuleNotFoundError("No module named 'logstrem'", name="logstrem")

    module.needs_cryptography = needs_cryptography  # type: ignore[attr-defined]
    module.needs_a_typo = needs_a_typo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_server_command", module)
    monkeypatch.setitem(COMMANDS, "fake", ("fake_server_command:needs_cryptography", ""))
    assert main(["fake"]) == 2
    assert capsys.readouterr().err == ("logstream fake: error: needs the server dependencies (module 'cryptography' "
                                       "is not installed): pip install 'logstream[server]'\n")
    monkeypatch.setitem(COMMANDS, "fake", ("fake_server_command:needs_a_typo", ""))
    with pytest.raises(ModuleNotFoundError):
        main(["fake"])
