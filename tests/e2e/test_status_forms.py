"""`logstream status -mediator` with real nodes: pointed at a streamer it says so (decided on the status
code and a probe of the streamer's own service), and its `--json` prints as `status FILE --json` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_logstream, start_node

pytestmark = pytest.mark.e2e


def test_status_at_a_streamer_says_it_is_a_streamer(tmp_path: Path) -> None:
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "logs")]) as node:
        done = run_logstream(["status", "-mediator", node.address])
        assert done.returncode == 1 and done.stderr.count("\n") == 1
        assert f"{node.address} is a streamer, not a mediator" in done.stderr
        assert node.stop() == 0


def test_status_mediator_json_is_indented_and_sorted() -> None:
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0"]) as node:
        done = run_logstream(["status", "-mediator", node.address, "--json"])
        assert done.returncode == 0, done.stderr
        assert done.stdout == json.dumps(json.loads(done.stdout), indent=2, sort_keys=True) + "\n"
        assert json.loads(done.stdout)["mediator"] == node.address
        assert node.stop() == 0
