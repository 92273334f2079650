"""The keys curve of issue 8: lines/s, peak descriptors and RSS per process as the number of keys grows.

    python scripts/keys_curve.py                  # the default curve: 42 bench runs, about 5 minutes on 2 cores
    python scripts/keys_curve.py --keys 1,1000 --repeats 2 --seconds 1 --lines-batch 0

Runs the `logstream bench` of the interpreter that runs it (`python -m logstream bench`), one bench
process per point, and prints Markdown tables on stdout (progress on stderr):
- for each --keys N, 100-byte lines, 1,000 lines a LogBatch call (`--mode batch --batch-lines 1000`),
  once against one streamer and once against a mediator + 2 streamers (`--cluster 2`); each client
  first writes every key of its own once (`--warmup`, unless --cold), so that the rates show writing
  to existing files, not creating them;
- 10-byte against 100-byte lines through a mediator + 2 streamers (the bench's default of 8 files a
  client), --lines-batch lines a LogBatch call (default 1,000; `--lines-batch 1000,10000` adds rows,
  `--lines-batch 0` drops the table), with the mediator's default linger and with `-linger 0`.
Every point runs --repeats times, the repeats interleaved (round after round over all points) so that
a neighbour's load spreads over all points; a cell shows the median and, in brackets, the range. A
point whose bench reported errors, or fewer lines on disk than acknowledged, is marked and explained.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_KEYS = "1,100,1000,10000,50000"
LINE_BYTES = (10, 100)


@dataclass(frozen=True)
class Point:
    """One bench configuration; `args` are passed to `logstream bench` after the common ones."""

    label: str
    args: tuple[str, ...]


@dataclass
class Runs:
    reports: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def curve_points(keys: Sequence[int], warm: bool) -> list[Point]:
    points = []
    for n in keys:
        common = ("--keys", str(n), "--mode", "batch", "--batch-lines", "1000", "--line-bytes", "100",
                  *(("--warmup",) if warm else ()))
        points.append(Point(f"one {n}", common))
        points.append(Point(f"cluster {n}", (*common, "--cluster", "2")))
    return points


def line_rows(batches: Sequence[int]) -> list[tuple[int, int]]:
    """(bytes a line, lines a call) of the line-size table."""
    return [(line_bytes, batch_lines) for batch_lines in batches for line_bytes in LINE_BYTES]


def line_points(batches: Sequence[int]) -> list[Point]:
    points = []
    for line_bytes, batch_lines in line_rows(batches):
        for linger in ("default", "0"):
            flags = () if linger == "default" else ("--mediator-flag=-linger=0",)
            points.append(Point(f"lines {line_bytes} {batch_lines} {linger}",
                                ("--cluster", "2", "--mode", "batch", "--line-bytes", str(line_bytes),
                                 "--batch-lines", str(batch_lines), *flags)))
    return points


def run_bench(point: Point, seconds: float, clients: int) -> dict[str, Any]:
    """One `logstream bench --json` run; its report, with its exit code and stderr's last line."""
    command = [sys.executable, "-m", "logstream", "bench", "--seconds", str(seconds), "--clients", str(clients),
               "--no-direct", "--json", *point.args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120 + 10 * seconds)
    if not done.stdout.strip():
        raise SystemExit(f"keys_curve: {' '.join(command[2:])} printed no report (exit {done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1:] or ''}")
    report: dict[str, Any] = json.loads(done.stdout)
    report["exit_code"] = done.returncode
    report["stderr_tail"] = (done.stderr.strip().splitlines() or [""])[-1]
    return report


def problems_of(report: dict[str, Any]) -> list[str]:
    """What went wrong in one run, if anything: errors, lines missing from disk, a node's bad exit."""
    found = []
    for row in report["results"]:
        if row["errors"]:
            found.append(f"{row['errors']} failed calls ({row.get('first_error', '')})")
    on_disk, acked = report.get("lines_on_disk", 0), report.get("lines_acked", 0)
    if on_disk < acked:
        found.append(f"{acked} lines acknowledged but {on_disk} on disk")
    elif on_disk > acked:  # calls that failed for their client yet were written: a retry writes them twice
        found.append(f"{on_disk - acked} lines on disk beyond the {acked} acknowledged")
    if any(report.get("node_exit_codes", [])):
        found.append(f"node exit codes {report['node_exit_codes']}")
    return found


# -- formatting (pure) ------------------------------------------------------------------------------


def short(value: float) -> str:
    """1234567 -> 1.23M, 98765 -> 98.8k, 950 -> 950."""
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def cell(values: Sequence[float], fmt: Any = short) -> str:
    """The median and, when the runs differ, their range: `412k (398k-430k)`."""
    if not values:
        return "n/a"
    middle = fmt(statistics.median(values))
    low, high = fmt(min(values)), fmt(max(values))
    return middle if low == high else f"{middle} ({low}-{high})"


def rates(runs: Runs) -> list[float]:
    return [float(report["results"][0]["lines_per_s"]) for report in runs.reports]


def node_values(runs: Runs, name: str, key: str) -> list[float]:
    return [float(node[key]) for report in runs.reports for node in report.get("nodes", [])
            if node["name"] == name and node[key] is not None]


def whole(value: float) -> str:
    return f"{value:,.0f}"


def mark(runs: Runs) -> str:
    return " (!)" if runs.problems else ""


def curve_table(keys: Sequence[int], data: dict[str, Runs]) -> list[str]:
    rows = ["| keys | one streamer: lines/s | peak fds | peak RSS MB "
            "| mediator + 2 streamers: lines/s | mediator fds | mediator RSS MB | streamers' fds | streamers' RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in keys:
        one, two = data[f"one {n}"], data[f"cluster {n}"]
        streamers = [(node_values(two, f"streamer {i}", "fds_peak"), node_values(two, f"streamer {i}", "rss_peak_mb"))
                     for i in range(2)]
        rows.append(
            f"| {n:,} | {cell(rates(one))}{mark(one)} | {cell(node_values(one, 'streamer', 'fds_peak'), whole)} "
            f"| {cell(node_values(one, 'streamer', 'rss_peak_mb'), whole)} "
            f"| {cell(rates(two))}{mark(two)} | {cell(node_values(two, 'mediator', 'fds_peak'), whole)} "
            f"| {cell(node_values(two, 'mediator', 'rss_peak_mb'), whole)} "
            f"| {' / '.join(cell(fds, whole) for fds, _ in streamers)} "
            f"| {' / '.join(cell(rss, whole) for _, rss in streamers)} |")
    return rows


def lines_table(batches: Sequence[int], data: dict[str, Runs]) -> list[str]:
    rows = ["| line | lines a call | default linger: lines/s | MB/s | `-linger 0`: lines/s | MB/s |",
            "|---:|---:|---:|---:|---:|---:|"]
    for line_bytes, batch_lines in line_rows(batches):
        cells = []
        for linger in ("default", "0"):
            runs = data[f"lines {line_bytes} {batch_lines} {linger}"]
            values = rates(runs)
            cells.append(f"{cell(values)}{mark(runs)} | {cell([v * line_bytes / 1e6 for v in values], whole)}")
        rows.append(f"| {line_bytes} B | {batch_lines:,} | {' | '.join(cells)} |")
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default=DEFAULT_KEYS, help=f"comma-separated key counts (default {DEFAULT_KEYS})")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each point (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="load time of each run (default 2)")
    parser.add_argument("--clients", type=int, default=2, help="client processes of each run (default 2)")
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up: the curve's rates include creating every file (default: `bench --warmup`)")
    parser.add_argument("--lines-batch", default="1000", metavar="LINES,...",
                        help="lines a call in the 10- against 100-byte lines table (default 1000; 0: no table)")
    args = parser.parse_args(argv)
    try:
        keys = [int(part) for part in args.keys.split(",") if part.strip()]
        batches = [int(part) for part in args.lines_batch.split(",") if part.strip() and int(part)]
    except ValueError:
        parser.error("--keys and --lines-batch take comma-separated numbers")
    if not keys or min(keys) < 1 or min(batches, default=1) < 1 or args.repeats < 1 or args.seconds <= 0 \
            or args.clients < 1:
        parser.error("--keys >= 1 each, --lines-batch >= 0, --repeats >= 1, --seconds > 0 and --clients >= 1 "
                     "are required")
    points = curve_points(keys, not args.cold) + line_points(batches)
    data = {point.label: Runs() for point in points}
    started = time.monotonic()
    load = os.getloadavg()
    for round_ in range(args.repeats):
        for number, point in enumerate(points, 1):
            sys.stderr.write(f"\rround {round_ + 1}/{args.repeats}, point {number}/{len(points)}: {point.label:<20}"
                             f" {time.monotonic() - started:5.0f}s ")
            sys.stderr.flush()
            report = run_bench(point, args.seconds, args.clients)
            data[point.label].reports.append(report)
            data[point.label].problems.extend(problems_of(report))
    sys.stderr.write("\n")
    print(f"`python scripts/keys_curve.py --keys {args.keys}{' --cold' if args.cold else ''} --lines-batch "
          f"{args.lines_batch} --repeats "
          f"{args.repeats} --seconds {args.seconds} --clients {args.clients}`: {os.cpu_count()} CPUs, load average {load[0]:.1f} at the start, "
          f"{time.monotonic() - started:.0f} s in all; median (range) of {args.repeats} runs.\n")
    print("\n".join(curve_table(keys, data)))
    if batches:
        print("\nThrough a mediator + 2 streamers, LogBatch, 8 files a client:\n")
        print("\n".join(lines_table(batches, data)))
    troubled = {label: runs.problems for label, runs in data.items() if runs.problems}
    if troubled:
        print("\n(!) runs with problems:")
        for label, found in troubled.items():
            print(f"- {label}: {'; '.join(sorted(set(found)))}")
    return 1 if troubled else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
