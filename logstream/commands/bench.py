"""`logstream bench`: lines/s, MB/s and ack latency of unary/batch/stream writes, beside a direct append;
with --rate, an open loop's p50/p99/p999 at a chosen rate.

Without --target it starts its own streamer (or with --cluster N a mediator and N streamers) in a
temporary folder, runs each mode for --seconds with --clients client processes, and in the same run
appends the same lines to a file straight from Python (open once, write each line, close): the
baseline the streamer's rate is compared with.

With --cluster N and --mediators LIST (or --etcd, --workers, --embedded) it compares routing tiers in
one run: the embedded single mediator, and etcd mode (a local etcd it starts, N etcd-mode streamers,
M stateless mediators with the clients spread over them, or W mediator processes on one port), each in
turn under the same load; then it times moving keys between two etcd-mode streamers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from logstream.commands.bench_client import MODES, Plan, Result, client_targets, make_lines, run_mode
from logstream.commands.bench_ha import Scenario, Setup, parse_counts, plan_scenarios, print_comparison, report_of, \
    run_comparison
from logstream.commands.bench_keys import key_load, total_keys
from logstream.commands.bench_nodes import NodeProc, count_lines, wait_cluster
from logstream.config.flags import GoFlagParser, UsageError
from logstream.node.procstat import ProcFigures, Sampler


# -- the direct-append baseline ---------------------------------------------------------------------


def direct_append(folder: Path, seconds: float, line_bytes: int, batch_lines: int) -> Result:
    """Append the bench's lines to one file from Python: open once, write each line, close."""
    lines = make_lines(0, batch_lines, line_bytes)
    path = folder / "direct.log"
    written = 0
    started = time.perf_counter()
    deadline = started + seconds
    with open(path, "ab") as file:
        write = file.write
        while time.perf_counter() < deadline:
            for line in lines:
                write(line)
            written += len(lines)
    elapsed = time.perf_counter() - started
    path.unlink()
    return Result("direct", 1, lines=written, bytes=written * line_bytes, calls=1, seconds=elapsed)


# -- command line -------------------------------------------------------------------------------------

KEYS_HELP = (
    "write N distinct keys (path, filename) over all client processes instead of --files: key i is the file "
    "bench/d<i // F>/k<i>.log (F = --keys-per-folder) and belongs to client i %% clients (with fewer keys than "
    "clients, clients share keys). Each batch or stream call carries --batch-lines lines spread evenly over a "
    "window of --keys-per-call of its client's keys, the next call over the next window, so every key is "
    "written in turn (like one file per tenant and day); unary calls take the keys one by one"
)


def _parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream bench", description=__doc__, allow_abbrev=False)
    parser.add_argument("--target", metavar="HOST:PORT",
                        help="a running streamer or mediator (default: start one). The lines it writes stay "
                             "in its files under bench/ in the streamers' roots: the bench cannot know those "
                             "roots, so it says where they are and leaves their removal to you")
    parser.add_argument("--cluster", type=int, default=0, metavar="N",
                        help="start a mediator and N streamers and send to the mediator")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each mode (default 5)")
    parser.add_argument("--clients", type=int, default=None,
                        help="client processes (default 2, or the most mediators of a --mediators/--workers setup)")
    parser.add_argument("--line-bytes", type=int, default=100, help="bytes per line, newline included (default 100)")
    parser.add_argument("--batch-lines", type=int, default=10_000, help="lines per batch message (default 10000)")
    parser.add_argument("--in-flight", type=int, default=0,
                        help="concurrent calls per client (default: 64 unary, 2 batch, 4 stream)")
    parser.add_argument("--files", type=int, default=0,
                        help="keys per client, all named in every call (default 1; 8 with --cluster)")
    parser.add_argument("--keys", type=int, default=0, metavar="N", help=KEYS_HELP)
    parser.add_argument("--keys-per-call", type=int, default=0, metavar="W",
                        help="keys one batch call names (default: all of its client's keys, at most --batch-lines)")
    parser.add_argument("--keys-per-folder", type=int, default=100, metavar="F",
                        help="files per folder with --keys (default 100)")
    parser.add_argument("--mode", default=None,
                        help=f"comma-separated, of {', '.join(MODES)} (default: unary,batch,stream; open with "
                             "--rate). ping is a streamer's Ping: a mediator has none, so it is refused there")
    parser.add_argument("--rate", type=float, default=0.0, metavar="N",
                        help="open loop: N lines/s over all clients in LogBatch calls of --batch-lines lines "
                             "sent on a fixed schedule whether or not earlier calls were answered; latency counts "
                             "from each call's scheduled time (no coordinated omission) and p50/p99/p999 come "
                             "from a log-bucketed histogram (within 0.8%%). Alone it runs only the open mode")
    parser.add_argument("--size", default="1MB", help="-size of the streamers the bench starts (default 1MB)")
    parser.add_argument("--mediator-flag", action="append", metavar="FLAG",
                        help="a flag for the mediator the bench starts with --cluster, repeatable: "
                             "--mediator-flag=-linger=0 (a value with spaces is split as a shell would: "
                             "--mediator-flag='-linger 0'); given after the bench's own, so it wins")
    parser.add_argument("--streamer-flag", action="append", metavar="FLAG",
                        help="a flag for every streamer the bench starts, repeatable, as --mediator-flag: "
                             "--streamer-flag=-max-open-files=256")
    parser.add_argument("--mediators", metavar="LIST",
                        help="with --cluster N: compare routing tiers, a comma list of mediator counts measured in "
                             "turn: 0 is the embedded single mediator (no etcd); M >= 1 is M etcd-mode mediators "
                             "on their own ports, the clients spread over them (comma targets), when etcd mode is "
                             "asked for (--etcd, any M > 1, or --workers), else M = 1 is the embedded mediator. "
                             "E.g. --mediators 0,1,2. etcd mode starts a local etcd (the `etcd` program)")
    parser.add_argument("--workers", metavar="LIST",
                        help="with --cluster N: also measure W >= 2 etcd-mode mediator processes sharing one port "
                             "(-reuse-port, as [mediator] workers = W), a comma list")
    parser.add_argument("--etcd", action="store_true", help="--mediators M >= 1 run in etcd mode (implied by M > 1)")
    parser.add_argument("--embedded", action="store_true",
                        help="also measure the embedded single mediator (as 0 in --mediators)")
    parser.add_argument("--move-keys", type=int, default=None, metavar="K",
                        help="after the etcd-mode scenarios, time moving K keys from one etcd-mode streamer to "
                             "another and back (Release, then the next owner's first write, which claims them); "
                             "keys/s and ms per key (default 1000 with an etcd scenario and 2 streamers or more; "
                             "0 skips)")
    parser.add_argument("--move-rounds", type=int, default=None, metavar="R",
                        help="moves of the K keys, the median reported (default 4)")
    parser.add_argument("--ca", help="CA certificate to verify --target with (TLS)")
    parser.add_argument("--crt", help="client certificate (mutual TLS)")
    parser.add_argument("--pk", help="client private key (mutual TLS)")
    parser.add_argument("--warmup", action="store_true",
                        help="before the clock starts, each client sends each of its calls once, so that every "
                             "key has been written (its file exists) and the rates show the steady state, not "
                             "the creation of files; those lines are checked on disk but not in the rates")
    parser.add_argument("--no-direct", action="store_true", help="skip the direct-append baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--keep-files", action="store_true",
                        help="keep the files of the nodes the bench starts and say where (by default they are "
                             "deleted; with --target nothing is deleted)")
    parser.epilog = ("Default modes: unary, batch and stream; the README's tables show them. "
                     "With nodes of its own (no --target) the bench also reports, per node process, the open "
                     "file descriptors (at the start and the peak of samples taken every 50 ms from "
                     "/proc/<pid>/fd) and the peak RSS (VmHWM from /proc/<pid>/status), and counts the lines "
                     "in every file under the nodes' roots, rotated ones too, against the lines acknowledged.")
    return parser


def _node_flags(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in shlex.split(value)]


def _modes(args: argparse.Namespace) -> list[str]:
    if args.mode is None:
        return ["open"] if args.rate else ["unary", "batch", "stream"]
    return [m.strip() for m in args.mode.split(",") if m.strip()]


def _check(args: argparse.Namespace) -> None:
    """Usage errors in the arguments, before anything starts."""
    modes = _modes(args)
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"--mode: unknown mode {mode!r} (known: {', '.join(MODES)})")
    if args.rate < 0 or ("open" in modes) != (args.rate > 0):
        raise UsageError("--rate N (lines/s, N > 0) and the open mode go together: give --rate alone, "
                         "or --mode with open and --rate")
    if "ping" in modes and args.cluster:
        raise UsageError("--mode ping measures a streamer's Ping, which a mediator does not serve: "
                         "drop ping, or bench one streamer (no --cluster)")
    if args.line_bytes < 2 or (args.clients is not None and args.clients < 1) or args.batch_lines < 1 or args.seconds <= 0:
        raise UsageError("--line-bytes >= 2, --clients >= 1, --batch-lines >= 1 and --seconds > 0 are required")
    if args.keys < 0 or args.keys_per_call < 0 or args.keys_per_folder < 1 or args.files < 0:
        raise UsageError("--keys >= 0, --keys-per-call >= 0, --keys-per-folder >= 1 and --files >= 0 are required")
    if args.keys and args.files:
        raise UsageError("--keys and --files exclude each other")
    if args.target and args.cluster:
        raise UsageError("--target and --cluster exclude each other")
    if args.target and (args.mediator_flag or args.streamer_flag):
        raise UsageError("--mediator-flag and --streamer-flag apply to nodes the bench starts, not to --target")
    if args.mediator_flag and not args.cluster:
        raise UsageError("--mediator-flag needs --cluster (without it the bench starts no mediator)")
    scenarios = _scenarios(args)
    if (args.move_keys is not None and args.move_keys < 0) or (args.move_rounds is not None and args.move_rounds < 1):
        raise UsageError("--move-keys K needs K >= 0 and --move-rounds R needs R >= 1")
    if (args.move_keys or args.move_rounds is not None) and not any(s.etcd for s in scenarios):
        raise UsageError("--move-keys/--move-rounds time moves between etcd-mode streamers: give --cluster N "
                         "with --mediators M (and --etcd, or M > 1)")
    if args.move_keys and args.cluster < 2:
        raise UsageError("--move-keys moves keys from one streamer to another: --cluster 2 or more")
    if scenarios and args.clients is not None and args.clients < max(s.mediators for s in scenarios):
        raise UsageError(f"--clients {args.clients} is fewer than the {max(s.mediators for s in scenarios)} "
                         "mediators of a setup: some would get no client")
    try:  # shlex refuses an unclosed quote
        for values in (args.mediator_flag, args.streamer_flag):
            _node_flags(values)
    except ValueError as exc:
        raise UsageError(f"--mediator-flag/--streamer-flag: {exc}") from None


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The routing tiers to compare (none: the single-target bench); UsageError for a bad combination."""
    if args.mediators is None and args.workers is None and not args.etcd and not args.embedded:
        return []
    if not args.cluster:
        raise UsageError("--mediators, --workers, --etcd and --embedded compare clusters: give --cluster N "
                         "(the streamers), and no --target")
    mediators = parse_counts(args.mediators, "--mediators", 0) if args.mediators is not None else []
    workers = parse_counts(args.workers, "--workers", 2) if args.workers is not None else []
    if not mediators and not workers:
        mediators = [1]
    return plan_scenarios(mediators, workers, args.etcd, args.embedded)


def _start_nodes(args: argparse.Namespace, workdir: Path, nodes: list[NodeProc]) -> str:
    """Start the bench's own streamer, or mediator and streamers, appending each to `nodes`; the target."""
    streamer_flags = _node_flags(args.streamer_flag)
    if not args.cluster:
        node = NodeProc(["streamer", "-port", "0", "-host", "127.0.0.1", "-path", str(workdir / "logs"),
                      "-size", args.size, *streamer_flags], "streamer")
        nodes.append(node)
        return f"127.0.0.1:{node.wait_listening()}"
    mediator = NodeProc(["mediator", "-port", "0", "-host", "127.0.0.1", "-health-interval", "1s",
                      *_node_flags(args.mediator_flag)], "mediator")
    nodes.append(mediator)
    target = f"127.0.0.1:{mediator.wait_listening()}"
    for index in range(args.cluster):
        nodes.append(NodeProc(["streamer", "-port", "0", "-host", "127.0.0.1", "-mediator", target,
                            "-path", str(workdir / f"s{index}"), "-size", args.size, *streamer_flags],
                           f"streamer {index}"))
    for node in nodes[1:]:
        node.wait_listening()
    wait_cluster(target, args.cluster)
    return target


def _refuse_ping_at_a_mediator(args: argparse.Namespace) -> None:
    """--target with the ping mode: one line before anything runs when the target has no Pinger
    (decided on UNIMPLEMENTED; any other outcome is left to the mode itself to report)."""
    import grpc

    from logstream._proto import logstream_pb2 as pb
    from logstream._proto import logstream_pb2_grpc as pb_grpc
    from logstream.node import tls
    from logstream.node.channel import sync_channel

    creds = tls.channel_credentials(*(Path(p) if p else None for p in (args.ca, args.crt, args.pk)))
    with sync_channel(client_targets(args.target, 0)[0], creds) as channel:  # the first of a comma list
        try:
            pb_grpc.PingerStub(channel).Ping(pb.PingRequest(a=3, b=4), timeout=5)  # type: ignore[no-untyped-call]
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise UsageError(f"--mode ping: {args.target} serves no Ping (a mediator has none): drop ping, "
                                 "or give a streamer's address") from None


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    modes = _modes(args)
    if args.target and "ping" in modes:
        _refuse_ping_at_a_mediator(args)
    show_progress = sys.stderr.isatty() and not args.json
    files = args.files or (8 if args.cluster else 1)
    scenarios = _scenarios(args)
    if args.clients is None:
        args.clients = max([2, *(s.mediators for s in scenarios)])
    if scenarios:
        return _compare(args, scenarios, modes, files, show_progress)
    first_load = key_load(0, args.clients, args.keys, files, args.keys_per_call, args.keys_per_folder,
                          args.batch_lines)
    workdir = Path(tempfile.mkdtemp(prefix="logstream-bench-"))
    nodes: list[NodeProc] = []
    sampler: Sampler | None = None
    figures: list[ProcFigures] = []
    verified: int | None = None
    results: list[Result] = []
    direct: Result | None = None
    try:
        target = args.target or _start_nodes(args, workdir, nodes)
        if nodes:
            sampler = Sampler([(node.name, node.proc.pid) for node in nodes])
            sampler.start()
        for mode in modes:
            in_flight = args.in_flight or {"ping": 64, "unary": 64, "batch": 2, "stream": 4, "open": 1}[mode]
            plan = Plan(target, mode, args.seconds, args.line_bytes, args.batch_lines, in_flight, files,
                        time.time() + 1.5, args.ca, args.crt, args.pk, keys=args.keys,
                        keys_per_call=args.keys_per_call, keys_per_folder=args.keys_per_folder,
                        clients=args.clients, warmup=args.warmup, rate=args.rate)
            results.append(run_mode(plan, args.clients, show_progress))
        if not args.no_direct:
            direct = direct_append(workdir, args.seconds, args.line_bytes, args.batch_lines)
    finally:
        if sampler is not None:
            figures = sampler.stop()  # the last sample, while the nodes still run
        codes = [node.stop() for node in reversed(nodes)]
        if nodes:
            verified = count_lines(workdir)
        if not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)
    rate = direct.lines_per_s if direct else 0.0
    report: dict[str, Any] = {
        "target": args.target or ("cluster of %d" % args.cluster if args.cluster else "own streamer"),
        "clients": args.clients,
        "line_bytes": args.line_bytes,
        "batch_lines": args.batch_lines,
        "keys": total_keys(args.keys, args.clients, files),
        "keys_per_call": max(len(group) for group in first_load.groups),
        **({"keys_per_folder": args.keys_per_folder} if args.keys else {}),
        "cpus": os.cpu_count(),
        "results": [r.summary() for r in [*results, *([direct] if direct else [])]],
        "ratio_to_direct": {r.mode: round(r.lines_per_s / rate, 6) for r in results} if rate else {},
    }
    if nodes:
        report["node_flags"] = {"mediator": _node_flags(args.mediator_flag),
                                "streamer": _node_flags(args.streamer_flag)}
        report["nodes"] = [f.summary() for f in figures]
    if verified is not None:
        acked = sum(r.lines + r.warmup_lines for r in results if r.mode != "ping")
        report["lines_on_disk"] = verified
        report["lines_acked"] = acked
        report["node_exit_codes"] = codes
    if args.keep_files and nodes:
        report["kept_files"] = str(workdir)
    if args.target and any(r.lines for r in results):
        report["left_files"] = f"bench/ under the root of each streamer behind {args.target}"
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    if verified is not None and verified < report["lines_acked"]:
        print(f"ERROR: {report['lines_acked']} lines acknowledged but {verified} on disk", file=sys.stderr)
        return 1
    return 0


def _print_table(report: dict[str, Any]) -> None:
    folders = f", {report['keys_per_folder']} a folder" if "keys_per_folder" in report else ""
    print(f"target: {report['target']}, {report['clients']} client processes, {report['line_bytes']}-byte lines, "
          f"{report['batch_lines']} lines per batch, {report['keys']:,} key{'s' if report['keys'] != 1 else ''} "
          f"({report['keys_per_call']:,} a call"
          f"{folders}), {report['cpus']} CPUs")
    print(f"{'mode':<8}{'lines/s':>14}{'MB/s':>9}{'p50 ms':>10}{'p99 ms':>10}{'p999 ms':>10}{'calls':>10}"
          f"{'errors':>8}  vs direct")
    for row in report["results"]:
        ratio = report["ratio_to_direct"].get(row["mode"])
        print(f"{row['mode']:<8}{row['lines_per_s']:>14,}{row['mb_per_s']:>9}{row['p50_ms']:>10}{row['p99_ms']:>10}"
              f"{row.get('p999_ms', ''):>10}{row['calls']:>10,}{row['errors']:>8}  "
              f"{'' if ratio is None else f'{ratio:.1%}'}")
        if row.get("offered_lines_per_s"):
            print(f"        open loop: {row['offered_lines_per_s']:,} lines/s offered; latency from each call's "
                  "scheduled time")
        if row.get("first_error"):
            print(f"        first error: {row['first_error']}")
    flags = report.get("node_flags", {})
    for role in ("mediator", "streamer"):
        if flags.get(role):
            print(f"{role} flags: {' '.join(flags[role])}")
    if report.get("nodes"):
        print(f"{'process':<12}{'pid':>8}{'fds at start':>14}{'peak fds':>10}{'peak RSS MB':>13}")
        for node in report["nodes"]:
            print(f"{node['name']:<12}{node['pid']:>8}{_or_na(node['fds_start']):>14}{_or_na(node['fds_peak']):>10}"
                  f"{_or_na(node['rss_peak_mb']):>13}")
    if "lines_on_disk" in report:
        print(f"lines acknowledged: {report['lines_acked']:,}; lines on disk: {report['lines_on_disk']:,}; "
              f"node exit codes: {report['node_exit_codes']}")
    if "kept_files" in report:
        print(f"files kept in {report['kept_files']}")
    if "left_files" in report:
        print(f"the lines written are left in {report['left_files']} (the bench does not know those roots; "
              "remove that folder when done)")


def _or_na(value: object) -> str:
    return "n/a" if value is None else str(value)


def _compare(args: argparse.Namespace, scenarios: list[Scenario], modes: list[str], files: int,
             show_progress: bool) -> int:
    """--mediators and friends: each routing tier in turn, one table; 1 when a line acknowledged is not on disk."""
    from logstream.commands.bench_etcd import require_etcd

    if any(s.etcd for s in scenarios):
        require_etcd()  # one line and exit 2 before anything starts
    if args.mode is None:
        modes = ["unary", "batch"]

    def plan_for(target: str, mode: str) -> Plan:
        in_flight = args.in_flight or {"unary": 64, "batch": 2, "stream": 4, "open": 1}[mode]
        return Plan(target, mode, args.seconds, args.line_bytes, args.batch_lines, in_flight, files,
                    time.time() + 1.5, keys=args.keys, keys_per_call=args.keys_per_call,
                    keys_per_folder=args.keys_per_folder, clients=args.clients, warmup=args.warmup, rate=args.rate)

    move = args.move_keys if args.move_keys is not None else (1000 if args.cluster >= 2 else 0)
    setup = Setup(args.cluster, args.clients, modes, plan_for, args.size, _node_flags(args.mediator_flag),
                  _node_flags(args.streamer_flag), move, args.move_rounds or 4, show_progress)
    workdir = Path(tempfile.mkdtemp(prefix="logstream-bench-"))
    direct: Result | None = None
    try:
        outcome = run_comparison(setup, scenarios, workdir)
        if not args.no_direct:
            direct = direct_append(workdir, args.seconds, args.line_bytes, args.batch_lines)
        on_disk = count_lines(workdir)
    finally:
        if not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)
    report = report_of(outcome, direct)
    report["head"] = {"streamers": args.cluster, "clients": args.clients, "line_bytes": args.line_bytes,
                      "batch_lines": args.batch_lines, "keys": total_keys(args.keys, args.clients, files),
                      "cpus": os.cpu_count()}
    report["lines_acked"], report["lines_on_disk"] = outcome.lines_acked(), on_disk
    report["node_exit_codes"] = outcome.exit_codes
    if args.keep_files:
        report["kept_files"] = str(workdir)
    if args.json:
        print(json.dumps(report))
    else:
        print_comparison(report)
    if on_disk < report["lines_acked"]:
        print(f"ERROR: {report['lines_acked']} lines acknowledged but {on_disk} on disk", file=sys.stderr)
        return 1
    return 0
