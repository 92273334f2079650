"""The fault suite's figures: each scenario records one row; the rows are printed at the end of the
run as the README's "What it survives" table, and written to $LOGSTREAM_FAULTS_TABLE when set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from figures import ROWS, Figures, table


@pytest.fixture
def figures() -> Figures:
    return Figures()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    text = table(ROWS)
    terminalreporter.write_sep("=", "What it survives (tests/faults)")
    terminalreporter.write(text)
    target = os.environ.get("LOGSTREAM_FAULTS_TABLE")
    if target:
        Path(target).write_text(text)
