"""A command whose stdout reader has gone (`logstream ... | head -3`) exits 141 quietly: no traceback,
no "Exception ignored" from the interpreter's last flush."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from logstream.commands.main import BROKEN_PIPE_EXIT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("args", [["config", "show", "cluster.toml"], ["status", "cluster.toml"], ["--help"]])
def test_a_closed_pipe_is_a_quiet_exit(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "cluster.toml").write_text("[cluster]\nname = 'pipe'\nrun_dir = 'run'\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "logstream", *args], cwd=tmp_path, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == BROKEN_PIPE_EXIT == 141, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
