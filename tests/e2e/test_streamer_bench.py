"""`logstream bench` runs end to end against its own streamer and reports rates, latencies, the
direct-append baseline, that every acknowledged line is on disk, and, with --keys, a many-keys load
with each node's descriptors and peak RSS."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def _figures_of(report: dict[str, object], names: list[str]) -> None:
    nodes = report["nodes"]
    assert isinstance(nodes, list) and [node["name"] for node in nodes] == names
    for node in nodes:
        assert type(node["fds_start"]) is int and type(node["fds_peak"]) is int and node["pid"] > 0, node
        assert 0 < node["fds_start"] <= node["fds_peak"], node
        assert node["rss_peak_mb"] > 10, node  # a Python process with grpc loaded: tens of MB


def test_bench_many_keys(tmp_path: Path) -> None:
    """--keys 200 over 2 clients: every key written, in 2 folders of 100; each call names a client's 100
    keys; the warm-up is one call a client; the streamer's figures are reported; every acknowledged
    line, warm-up included, is on disk."""
    done = run_logstream(["bench", "--keys", "200", "--seconds", "1", "--clients", "2", "--mode", "batch,stream",
                          "--batch-lines", "1000", "--no-direct", "--keep-files", "--warmup", "--size=-1B", "--json"],
                         timeout_s=90,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["keys"], report["keys_per_call"], report["keys_per_folder"]) == (200, 100, 100)
    rows = {row["mode"]: row for row in report["results"]}
    assert set(rows) == {"batch", "stream"}
    assert all(row["lines"] > 0 and row["errors"] == 0 for row in rows.values()), rows
    assert rows["batch"]["warmup_lines"] == rows["stream"]["warmup_lines"] == 2 * 1000
    assert report["lines_on_disk"] == report["lines_acked"] == sum(row["lines"] + 2000 for row in rows.values())
    _figures_of(report, ["streamer"])
    # the streamer holds the 200 files open (below its default cap of 256) while the load runs
    assert report["nodes"][0]["fds_peak"] >= report["nodes"][0]["fds_start"] + 200
    root = Path(report["kept_files"]) / "logs"  # files never rotate here (-size -1B): one file a key
    assert root.is_relative_to(tmp_path)
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.log"))
    assert files == sorted(f"bench/d{i // 100}/k{i}.log" for i in range(200))


def test_bench_many_keys_through_a_cluster_with_node_flags(tmp_path: Path) -> None:
    """--streamer-flag reaches both streamers (a small -size makes them rotate), the rotated files are
    counted with the others, and each of the three nodes has its figures."""
    done = run_logstream(["bench", "--cluster", "2", "--keys", "40", "--seconds", "1", "--clients", "1",
                          "--mode", "unary,batch", "--batch-lines", "1000", "--no-direct", "--keep-files",
                          "--streamer-flag=-size=20KB", "--mediator-flag=-linger=0", "--json"], timeout_s=120,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["node_flags"] == {"mediator": ["-linger=0"], "streamer": ["-size=20KB"]}
    assert all(row["lines"] > 0 and row["errors"] == 0 for row in report["results"]), report["results"]
    assert report["lines_on_disk"] == report["lines_acked"] == sum(row["lines"] for row in report["results"])
    assert report["node_exit_codes"] == [0, 0, 0]
    _figures_of(report, ["mediator", "streamer 0", "streamer 1"])
    kept = Path(report["kept_files"])
    for root in (kept / "s0", kept / "s1"):
        names = [path.name for path in root.rglob("*.log")]
        assert any("_" in name for name in names), f"no rotated file under {root}: {names}"


def test_bench_passes_mediator_flags_on() -> None:
    """A flag the mediator refuses stops the bench with the mediator's complaint and exit code 2."""
    done = run_logstream(["bench", "--cluster", "1", "--mediator-flag=-linger=banana", "--seconds", "1"],
                         timeout_s=60)
    assert done.returncode == 2 and "mediator did not start" in done.stderr and "linger" in done.stderr


@pytest.mark.parametrize("args", [
    ["--keys", "10", "--files", "2"],
    ["--mediator-flag=-linger=0"],
    ["--target", "127.0.0.1:9", "--streamer-flag=-size=1MB"],
    ["--keys", "-1"],
    ["--keys-per-folder", "0"],
    ["--streamer-flag=-size='1MB"],
])
def test_bench_refuses_bad_key_and_flag_options(args: list[str]) -> None:
    done = run_logstream(["bench", *args])
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
