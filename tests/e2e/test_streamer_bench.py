"""`logstream bench` runs end to end against its own streamer and reports rates, latencies, the
direct-append baseline, and that every acknowledged line is on disk."""

from __future__ import annotations

import json

import pytest
from helpers import run_logstream

pytestmark = pytest.mark.e2e


def test_bench_json_report() -> None:
    done = run_logstream(["bench", "--seconds", "1", "--clients", "1", "--mode", "unary,batch",
                          "--batch-lines", "1000", "--json"], timeout_s=90)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {row["mode"]: row for row in report["results"]}
    assert set(rows) == {"unary", "batch", "direct"}
    for mode in ("unary", "batch"):
        assert rows[mode]["lines"] > 0 and rows[mode]["errors"] == 0
        assert 0 < rows[mode]["p50_ms"] <= rows[mode]["p99_ms"]
        assert report["ratio_to_direct"][mode] > 0
    assert rows["batch"]["lines_per_s"] > rows["unary"]["lines_per_s"]
    assert report["lines_on_disk"] == report["lines_acked"] == rows["unary"]["lines"] + rows["batch"]["lines"]
    assert report["node_exit_codes"] == [0]


def test_bench_rejects_an_unknown_mode() -> None:
    done = run_logstream(["bench", "--mode", "carrier-pigeon"])
    assert done.returncode == 2 and "unknown mode" in done.stderr


def test_bench_against_a_cluster_of_two() -> None:
    """A mediator and two streamers (registration, leases, forwarding): every acked line is on disk."""
    done = run_logstream(["bench", "--cluster", "2", "--seconds", "1", "--clients", "1", "--mode", "batch",
                          "--batch-lines", "2000", "--json"], timeout_s=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    batch = report["results"][0]
    assert batch["lines"] > 0 and batch["errors"] == 0, batch
    assert report["lines_on_disk"] == report["lines_acked"] == batch["lines"]
    assert report["node_exit_codes"] == [0, 0, 0]
