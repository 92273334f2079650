"""The example alert rules (docs/alerts.yml) are valid for Prometheus (`promtool check rules`),
fire on the made-up series of docs/alerts_test.yml and only then (`promtool test rules`), and name
only metrics that logstream exports (the names its collectors and docs/operations.md use)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; .ci/run installs it)")


@needs_promtool
@pytest.mark.parametrize("check", [["check", "rules", "docs/alerts.yml"], ["test", "rules", "docs/alerts_test.yml"]])
def test_promtool_accepts_the_rules(check: list[str]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_only_metrics_the_operations_page_lists() -> None:
    used = set(re.findall(r"\blogstream_\w+", ALERTS.read_text(encoding="utf-8")))
    documented = set(re.findall(r"`(logstream_\w+?)(?:\{[^`]*\})?`",
                                (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")))
    # A counter is documented by its family name; the rules use the sample's `_total`.
    missing = {name for name in used if name not in documented and name.removesuffix("_total") not in documented}
    assert used and not missing, sorted(missing)
