"""Unary and batch lines/s through etcd-mode mediators (M = 1, M = 2 on two ports, 2 processes on one port) beside the embedded single mediator, in one run.

Usage: .venv/bin/python scripts/ha_bench.py [--seconds 4] [--clients 4] [--json]
Needs an `etcd` binary (Debian: etcd-server). Every scenario has two streamers, each with its own
root; the lines acknowledged are counted on disk at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logstream.commands.bench import _count_lines, _Proc, _wait_cluster  # noqa: E402
from logstream.commands.bench_client import Plan, Result, run_mode  # noqa: E402
from tests.e2e.etcd_server import EtcdServer  # noqa: E402

IN_FLIGHT = {"unary": 64, "batch": 2}


def measure(targets: list[str], mode: str, seconds: float, clients: int) -> Result:
    """`clients` client processes split evenly over `targets`, all starting at once; the sum."""
    start_at = time.time() + 2.0
    share = max(1, clients // len(targets))
    parts: list[Result] = []

    def one(target: str) -> None:
        plan = Plan(target, mode, seconds, 100, 500, IN_FLIGHT[mode], 8, start_at, clients=share)
        parts.append(run_mode(plan, share, False))

    threads = [threading.Thread(target=one, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Result(mode, share * len(targets))
    for part in parts:
        total.lines += part.lines
        total.errors += part.errors
        total.seconds = max(total.seconds, part.seconds)
        total.first_error = total.first_error or part.first_error
    return total


def run(seconds: float, clients: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="logstream-ha-bench-"))
    report: dict[str, Any] = {"seconds": seconds, "clients": clients, "results": []}
    acked = 0

    def record(scenario: str, targets: list[str]) -> None:
        nonlocal acked
        for mode in ("unary", "batch"):
            result = measure(targets, mode, seconds, clients)
            acked += result.lines
            report["results"].append({"scenario": scenario, "mode": mode, "lines_per_s": round(result.lines_per_s),
                                      "errors": result.errors, **({"first_error": result.first_error}
                                                                   if result.first_error else {})})
            print(f"{scenario:<34} {mode:<6} {result.lines_per_s:>10,.0f} lines/s  errors {result.errors}",
                  file=sys.stderr)

    nodes: list[_Proc] = []
    etcd: EtcdServer | None = None
    try:
        # The embedded single mediator (no etcd).
        mediator = _Proc(["mediator", "-port", "0", "-host", "127.0.0.1", "-health-interval", "1s"], "mediator")
        nodes.append(mediator)
        target = f"127.0.0.1:{mediator.wait_listening()}"
        for index in range(2):
            nodes.append(_Proc(["streamer", "-port", "0", "-host", "127.0.0.1", "-mediator", target,
                                "-path", str(workdir / f"embedded-s{index}")], f"streamer {index}"))
            nodes[-1].wait_listening()
        _wait_cluster(target, 2)
        record("embedded, 1 mediator", [target])
        for node in reversed(nodes):
            node.stop()
        nodes.clear()

        # etcd mode: two streamers; mediators A, B (own ports) and C1, C2 (one port, SO_REUSEPORT).
        etcd = EtcdServer(workdir / "etcd").start()
        common = ["-etcd", etcd.endpoint, "-cluster", "bench"]
        for index in range(2):
            nodes.append(_Proc(["streamer", "-port", "0", "-host", "127.0.0.1", "-path", str(workdir / f"etcd-s{index}"),
                                "-id", f"s{index}", *common], f"streamer {index}"))
            nodes[-1].wait_listening()
        ports = []
        for name in ("A", "B"):
            nodes.append(_Proc(["mediator", "-port", "0", "-host", "127.0.0.1", *common], f"mediator {name}"))
            ports.append(nodes[-1].wait_listening())
        first = _Proc(["mediator", "-port", "0", "-host", "127.0.0.1", "-reuse-port", *common], "mediator C1")
        nodes.append(first)
        shared = first.wait_listening()
        nodes.append(_Proc(["mediator", "-port", str(shared), "-host", "127.0.0.1", "-reuse-port", *common],
                           "mediator C2"))
        nodes[-1].wait_listening()
        a, b, c = (f"127.0.0.1:{port}" for port in (*ports, shared))
        for target in (a, b, c):
            _wait_cluster(target, 2)
        record("etcd, M=1", [a])
        record("etcd, M=2 (two ports)", [a, b])
        record("etcd, 2 processes on one port", [c])
    finally:
        for node in reversed(nodes):
            node.stop()
        if etcd is not None:
            etcd.stop()
        on_disk = _count_lines(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    report["lines_acked"], report["lines_on_disk"] = acked, on_disk
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes per measurement (even)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.seconds, args.clients)
    if args.json:
        print(json.dumps(report))
    if report["lines_on_disk"] < report["lines_acked"]:
        print(f"ERROR: {report['lines_acked']} lines acknowledged, {report['lines_on_disk']} on disk", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
