"""scripts/keys_curve.py runs `logstream bench` per point and prints the keys curve as Markdown."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "keys_curve.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("keys_curve", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["keys_curve"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cells_show_the_median_and_the_range() -> None:
    curve = load_script()
    assert curve.cell([398_000, 430_000, 412_000]) == "412k (398k-430k)"
    assert curve.cell([1_234_567]) == "1.23M"
    assert curve.cell([5.0, 5.0], curve.whole) == "5"
    assert curve.cell([]) == "n/a"


def test_a_small_curve_end_to_end() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--keys", "30", "--repeats", "1", "--seconds", "0.5",
                           "--clients", "1", "--lines-batch", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if re.match(r"\| [\d,]+ \|", line)}
    assert set(rows) == {"30"}
    for row in rows.values():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 9 and all(re.match(r"[\d.,]+[kM]?( / [\d.,]+)?$", cell) for cell in cells[1:]), row
    assert "(!)" not in done.stdout


def test_bad_arguments_are_refused() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--keys", "ten"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--keys" in done.stderr


def test_problems_name_lost_and_unacknowledged_lines() -> None:
    curve = load_script()
    clean = {"results": [{"errors": 0}], "lines_on_disk": 10, "lines_acked": 10, "node_exit_codes": [0, 0]}
    assert curve.problems_of(clean) == []
    assert curve.problems_of({**clean, "lines_on_disk": 7}) == ["10 lines acknowledged but 7 on disk"]
    failed = {**clean, "results": [{"errors": 2, "first_error": "UNAVAILABLE: x"}], "lines_on_disk": 13}
    assert curve.problems_of(failed) == ["2 failed calls (UNAVAILABLE: x)", "3 lines on disk beyond the 10 acknowledged"]
    assert curve.problems_of({**clean, "node_exit_codes": [0, 1]}) == ["node exit codes [0, 1]"]
