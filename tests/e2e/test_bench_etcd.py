"""`logstream bench --cluster 2 --mediators 2` runs for real: a local etcd, two etcd-mode streamers (each its
own root) and two stateless mediators, the clients spread over them; every acknowledged line is on disk,
each key of the load in one root only, and moving keys between the streamers is timed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import run_logstream

pytestmark = pytest.mark.e2e


def test_bench_with_two_etcd_mode_mediators_puts_every_acknowledged_line_on_disk() -> None:
    done = run_logstream(["bench", "--cluster", "2", "--mediators", "2", "--seconds", "1", "--clients", "2",
                          "--batch-lines", "1000", "--move-keys", "40", "--move-rounds", "2", "--no-direct",
                          "--keep-files", "--json"], timeout_s=150)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    kept = Path(report["kept_files"])
    try:
        [scenario] = report["scenarios"]
        assert (scenario["name"], scenario["etcd"], scenario["mediators"]) == ("etcd, 2 mediators", True, 2)
        rows = {row["mode"]: row for row in scenario["results"]}
        assert set(rows) == {"unary", "batch"}
        for row in rows.values():
            assert row["lines"] > 0 and row["errors"] == 0, row
            assert row["mediators_cpu"] > 0 and row["streamers_cpu"] > 0, row  # both tiers worked
        move = report["move"]
        assert move["keys"] == 40 and move["rounds"] == 2 and move["keys_per_s"] > 0 and move["ms_per_key"] > 0
        # the load's lines, the moves' lines (40 a write: one first claim, then per round a held write and a claim)
        assert report["lines_acked"] == rows["unary"]["lines"] + rows["batch"]["lines"] + 40 * (1 + 2 * 2)
        # counted here too, not only by the bench: every acknowledged line is in a file
        on_disk = sum(path.read_bytes().count(b"\n") for path in kept.rglob("*.log"))
        assert on_disk == report["lines_on_disk"] == report["lines_acked"]
        # one writer per key: each file of the load is in one streamer's root only
        roots = [kept / "etcd" / "s0", kept / "etcd" / "s1"]
        files = [{p.relative_to(root / "bench") for p in (root / "bench").rglob("*.log")} if (root / "bench").is_dir()
                 else set() for root in roots]
        assert files[0] | files[1] and not files[0] & files[1], files
        assert report["node_exit_codes"] == [0] * 4  # two mediators, two streamers
    finally:
        shutil.rmtree(kept, ignore_errors=True)
