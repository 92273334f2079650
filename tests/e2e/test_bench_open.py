"""`logstream bench`'s open loop and its --target and ping edges, with real nodes: the open mode sends at
the asked rate and reports p50/p99/p999 from the scheduled times with every acknowledged line on disk;
--mode ping at a mediator is refused in one line before anything runs; --target says where its lines stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_logstream, start_node

pytestmark = pytest.mark.e2e


def test_open_loop_reports_tail_percentiles_at_the_offered_rate() -> None:
    done = run_logstream(["bench", "--seconds", "2", "--clients", "1", "--rate", "20000", "--batch-lines", "100",
                          "--no-direct", "--json"], timeout_s=90)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [row] = report["results"]
    assert row["mode"] == "open" and row["errors"] == 0 and row["offered_lines_per_s"] == 20000
    assert row["calls"] == 400  # 2 s x 200 calls/s, each on its schedule
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"]
    assert report["lines_on_disk"] == report["lines_acked"] == 40_000


def test_default_modes_include_stream() -> None:
    done = run_logstream(["bench", "--seconds", "0.5", "--clients", "1", "--batch-lines", "100", "--no-direct",
                          "--json"], timeout_s=90)
    assert done.returncode == 0, done.stderr
    assert [row["mode"] for row in json.loads(done.stdout)["results"]] == ["unary", "batch", "stream"]


def test_ping_at_a_mediator_is_refused_before_anything_runs() -> None:
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0"]) as mediator:
        done = run_logstream(["bench", "--target", mediator.address, "--mode", "ping,batch", "--seconds", "1"])
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "serves no Ping" in done.stderr
        assert done.stdout == ""
        assert mediator.stop() == 0


def test_target_says_where_its_lines_stay(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root)]) as node:
        done = run_logstream(["bench", "--target", node.address, "--mode", "batch", "--seconds", "0.5",
                              "--clients", "1", "--batch-lines", "100", "--no-direct"], timeout_s=90)
        assert done.returncode == 0, done.stderr
        assert f"left in bench/ under the root of each streamer behind {node.address}" in done.stdout
        assert any((root / "bench").rglob("*.log"))  # the help promised they stay: they do
        assert node.stop() == 0
