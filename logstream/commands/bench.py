"""`logstream bench`: lines/s, MB/s and ack latency of unary/batch/stream writes, beside a direct append.

Without --target it starts its own streamer (or with --cluster N a mediator and N streamers) in a
temporary folder, runs each mode for --seconds with --clients client processes, and in the same run
appends the same lines to a file straight from Python (open once, write each line, close): the
baseline the streamer's rate is compared with.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstream.commands.bench_keys import key_load, spread, total_keys
from logstream.config.flags import UsageError
from logstream.node.procstat import ProcFigures, Sampler

MODES = ("ping", "unary", "batch", "stream")  # ping: the gRPC round trip alone, no write
_LISTENING = re.compile(r"(?<!debug server )listening on (\S+):(\d+)")


@dataclass(frozen=True)
class Plan:
    """What every client process does (picklable: sent to spawned processes)."""

    target: str
    mode: str
    seconds: float
    line_bytes: int
    batch_lines: int
    in_flight: int
    files: int  # keys per client in the default layout (see bench_keys)
    start_at: float  # time.time() when every client begins
    ca: str | None = None
    crt: str | None = None
    pk: str | None = None
    keys: int = 0  # --keys: distinct keys over all clients (0: the default layout)
    keys_per_call: int = 0  # --keys-per-call (0: all of a client's keys, at most batch_lines)
    keys_per_folder: int = 100
    clients: int = 1
    warmup: bool = False  # --warmup: each client sends every prepared request once before the clock starts


@dataclass
class Result:
    mode: str
    clients: int
    lines: int = 0
    bytes: int = 0
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str = ""
    warmup_lines: int = 0  # acknowledged before the clock started (--warmup): on disk, not in the rates

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "mode": self.mode,
            "clients": self.clients,
            "lines": self.lines,
            "seconds": round(self.seconds, 3),
            "lines_per_s": round(self.lines_per_s),
            "mb_per_s": round(self.bytes / self.seconds / 1e6, 1) if self.seconds else 0.0,
            "calls": self.calls,
            "errors": self.errors,
            "p50_ms": round(_percentile(lat, 0.50), 3),
            "p99_ms": round(_percentile(lat, 0.99), 3),
            **({"first_error": self.first_error} if self.first_error else {}),
            **({"warmup_lines": self.warmup_lines} if self.warmup_lines else {}),
        }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def make_lines(client: int, count: int, line_bytes: int) -> list[bytes]:
    """`count` distinct lines of exactly `line_bytes` bytes each, newline included."""
    lines = []
    for seq in range(count):
        head = f"bench client={client} seq={seq:09d} "
        body = (head + "x" * max(0, line_bytes - 1 - len(head)))[: line_bytes - 1]
        lines.append(body.encode() + b"\n")
    return lines


# -- client processes --------------------------------------------------------------------------------


_progress: Any = None  # the shared array of lines acked per client, set in each client process
_barrier: Any = None  # where the clients wait for each other after --warmup
WARMUP_LIMIT_S = 600.0  # the longest a client waits for the others to finish their warm-up


def _init_client(progress: Any, barrier: Any) -> None:
    global _progress, _barrier
    _progress, _barrier = progress, barrier


def _client_main(args: tuple[Plan, int]) -> Result:
    plan, client = args
    import asyncio

    return asyncio.run(_client(plan, client, _progress))


async def _client(plan: Plan, client: int, progress: Any) -> Result:
    import asyncio

    import grpc

    from logstream._proto import logstream_pb2 as pb
    from logstream.node import tls
    from logstream.node.channel import aio_channel

    creds = tls.channel_credentials(*(Path(p) if p else None for p in (plan.ca, plan.crt, plan.pk)))
    channel = aio_channel(plan.target, creds)
    lines = make_lines(client, plan.batch_lines if plan.mode != "unary" else 1000, plan.line_bytes)
    load = key_load(client, plan.clients, plan.keys, plan.files, plan.keys_per_call, plan.keys_per_folder,
                    plan.batch_lines)
    result = Result(plan.mode, 1)
    if plan.mode == "ping":
        requests = [pb.PingRequest(a=3, b=4).SerializeToString()]
        lines_per_call, bytes_per_call = 1, 0
        call = channel.unary_unary("/api.Pinger/Ping", request_serializer=None,
                                   response_deserializer=pb.PingResponse.FromString)
    elif plan.mode == "unary":
        # one line a call, the keys in turn
        requests = [pb.LogRequest(path=load.keys[i % len(load.keys)][0], filename=load.keys[i % len(load.keys)][1],
                                  line=lines[i % len(lines)][:-1].decode()).SerializeToString()
                    for i in range(max(len(lines), len(load.keys)))]
        lines_per_call, bytes_per_call = 1, plan.line_bytes
        call = channel.unary_unary("/api.LogStreamer/Log", request_serializer=None,
                                   response_deserializer=pb.LogResponse.FromString)
    else:
        # one message per group of keys, each carrying all `batch_lines` lines spread over its keys;
        # the calls take the messages in turn
        blob = b"".join(lines)
        requests = []
        for group in load.groups:
            chunks, start = [], 0
            for index, count in zip(group, spread(len(lines), len(group))):
                path, filename = load.keys[index]
                end = start + count * plan.line_bytes
                chunks.append(pb.LogChunk(path=path, filename=filename, data=blob[start:end]))
                start = end
            requests.append(pb.LogBatchRequest(chunks=chunks).SerializeToString())
        lines_per_call, bytes_per_call = len(lines), len(blob)
        call = channel.unary_unary("/api.LogStreamer/LogBatch", request_serializer=None,
                                   response_deserializer=pb.LogBatchResponse.FromString)
    await channel.channel_ready()

    async def warm_up() -> None:
        """Every prepared request once, in-flight calls at a time: every key of this client written once."""
        batch_call = call if plan.mode != "stream" else channel.unary_unary(
            "/api.LogStreamer/LogBatch", request_serializer=None, response_deserializer=pb.LogBatchResponse.FromString)
        pending = iter(requests)

        async def worker() -> None:
            for request in pending:
                try:
                    await batch_call(request)
                except grpc.aio.AioRpcError as exc:
                    result.errors += 1
                    result.first_error = result.first_error or f"warm-up: {exc.code().name}: {exc.details()}"
                    continue
                result.warmup_lines += lines_per_call if plan.mode != "ping" else 0

        await asyncio.gather(*(worker() for _ in range(plan.in_flight)))

    if plan.warmup:
        await warm_up()
        try:  # the clock starts for all clients at once, after the slowest warm-up
            await asyncio.to_thread(_barrier.wait, WARMUP_LIMIT_S)
        except threading.BrokenBarrierError:
            result.errors += 1
            result.first_error = f"the clients' warm-ups did not all end within {WARMUP_LIMIT_S:.0f}s"
            await channel.close()
            return result
    await asyncio.sleep(max(0.0, plan.start_at - time.time()))
    started = time.perf_counter()
    deadline = started + plan.seconds
    latencies = result.latencies_ms

    async def unary_worker(offset: int) -> None:
        index = offset
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                await call(requests[index % len(requests)])
            except grpc.aio.AioRpcError as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{exc.code().name}: {exc.details()}"
                await asyncio.sleep(0.01)
                continue
            latencies.append((time.perf_counter() - sent) * 1000)
            result.calls += 1
            index += 1

    async def stream_worker() -> None:
        stream = channel.stream_stream("/api.LogStreamer/LogStream", request_serializer=None,
                                       response_deserializer=pb.LogBatchResponse.FromString)()
        sent_at: list[float] = []
        window = asyncio.Semaphore(plan.in_flight)

        async def sender() -> None:
            index = 0
            while time.perf_counter() < deadline:
                await window.acquire()
                sent_at.append(time.perf_counter())
                await stream.write(requests[index % len(requests)])
                index += 1
            await stream.done_writing()

        task = asyncio.create_task(sender())
        try:
            received = 0
            async for _ in stream:
                latencies.append((time.perf_counter() - sent_at[received]) * 1000)
                received += 1
                result.calls += 1
                window.release()
        except grpc.aio.AioRpcError as exc:
            result.errors += 1
            result.first_error = result.first_error or f"{exc.code().name}: {exc.details()}"
        finally:
            task.cancel()

    async def report() -> None:
        while time.perf_counter() < deadline:
            progress[client] = result.calls * lines_per_call
            await asyncio.sleep(0.2)

    reporter = asyncio.create_task(report())
    if plan.mode == "stream":
        await stream_worker()
    else:
        await asyncio.gather(*(unary_worker(i) for i in range(plan.in_flight)))
    result.seconds = time.perf_counter() - started
    reporter.cancel()
    progress[client] = result.calls * lines_per_call
    result.lines = result.calls * lines_per_call
    result.bytes = result.calls * bytes_per_call
    if len(latencies) > 200_000:  # keep the result small to send back; a systematic sample
        result.latencies_ms = sorted(latencies)[:: len(latencies) // 100_000]
    await channel.close()
    return result


def run_mode(plan: Plan, clients: int, show_progress: bool) -> Result:
    context = multiprocessing.get_context("spawn")
    progress = context.Array("q", clients, lock=False)
    barrier = context.Barrier(clients)
    with context.Pool(clients, initializer=_init_client, initargs=(progress, barrier)) as pool:
        pending = pool.map_async(_client_main, [(plan, client) for client in range(clients)])
        while not pending.ready():
            pending.wait(0.25)
            if show_progress:
                now = time.time()
                elapsed = max(0.0, min(plan.seconds, now - plan.start_at))
                done = sum(progress)
                rate = done / elapsed if elapsed > 0 else 0.0
                sys.stderr.write(f"\r  {plan.mode:<7} {elapsed:5.1f}/{plan.seconds:.0f}s  {done:>12,} lines  "
                                 f"{rate:>12,.0f} lines/s ")
                sys.stderr.flush()
        parts = pending.get()
    if show_progress:
        sys.stderr.write("\r" + " " * 78 + "\r")
    total = Result(plan.mode, clients)
    for part in parts:
        total.lines += part.lines
        total.bytes += part.bytes
        total.calls += part.calls
        total.errors += part.errors
        total.warmup_lines += part.warmup_lines
        total.seconds = max(total.seconds, part.seconds)
        total.latencies_ms.extend(part.latencies_ms)
        total.first_error = total.first_error or part.first_error
    return total


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


# -- nodes the bench starts itself ------------------------------------------------------------------


class _Proc:
    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "logstream", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.port:
                self.port = int(match.group(2))
                self._ready.set()
        self._ready.set()

    def wait_listening(self, timeout_s: float = 30.0) -> int:
        self._ready.wait(timeout_s)
        if not self.port:
            self.stop()
            raise UsageError(f"{self.name} did not start: " + " | ".join(self.lines[-5:]))
        return self.port

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _count_lines(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.log"):
        with open(path, "rb") as file:
            while block := file.read(1 << 22):
                total += block.count(b"\n")
    return total


def _wait_cluster(mediator: str, count: int, timeout_s: float = 30.0) -> None:
    """Until the mediator reports `count` live streamers."""
    import grpc

    from logstream._proto import logstream_pb2 as pb
    from logstream._proto import logstream_pb2_grpc as pb_grpc
    from logstream.node.channel import sync_channel

    deadline = time.monotonic() + timeout_s
    with sync_channel(mediator) as channel:
        stub = pb_grpc.ClusterStatusStub(channel)  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            try:
                status = stub.Status(pb.StatusRequest(), timeout=2)
                if sum(1 for s in status.streamers if s.alive) >= count:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise UsageError(f"the mediator at {mediator} did not report {count} live streamers within {timeout_s}s")


# -- command line -------------------------------------------------------------------------------------

KEYS_HELP = (
    "write N distinct keys (path, filename) over all client processes instead of --files: key i is the file "
    "bench/d<i // F>/k<i>.log (F = --keys-per-folder) and belongs to client i %% clients (with fewer keys than "
    "clients, clients share keys). Each batch or stream call carries --batch-lines lines spread evenly over a "
    "window of --keys-per-call of its client's keys, the next call over the next window, so every key is "
    "written in turn (like one file per tenant and day); unary calls take the keys one by one"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logstream bench", description=__doc__)
    parser.add_argument("--target", metavar="HOST:PORT", help="a running streamer or mediator (default: start one)")
    parser.add_argument("--cluster", type=int, default=0, metavar="N",
                        help="start a mediator and N streamers and send to the mediator")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each mode (default 5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
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
    parser.add_argument("--mode", default="unary,batch", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--size", default="1MB", help="-size of the streamers the bench starts (default 1MB)")
    parser.add_argument("--mediator-flag", action="append", metavar="FLAG",
                        help="a flag for the mediator the bench starts with --cluster, repeatable: "
                             "--mediator-flag=-linger=0 (a value with spaces is split as a shell would: "
                             "--mediator-flag='-linger 0'); given after the bench's own, so it wins")
    parser.add_argument("--streamer-flag", action="append", metavar="FLAG",
                        help="a flag for every streamer the bench starts, repeatable, as --mediator-flag: "
                             "--streamer-flag=-max-open-files=256")
    parser.add_argument("--ca", help="CA certificate to verify --target with (TLS)")
    parser.add_argument("--crt", help="client certificate (mutual TLS)")
    parser.add_argument("--pk", help="client private key (mutual TLS)")
    parser.add_argument("--warmup", action="store_true",
                        help="before the clock starts, each client sends each of its calls once, so that every "
                             "key has been written (its file exists) and the rates show the steady state, not "
                             "the creation of files; those lines are checked on disk but not in the rates")
    parser.add_argument("--no-direct", action="store_true", help="skip the direct-append baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--keep-files", action="store_true", help="keep the nodes' files and say where")
    parser.epilog = ("With nodes of its own (no --target) the bench also reports, per node process, the open "
                     "file descriptors (at the start and the peak of samples taken every 50 ms from "
                     "/proc/<pid>/fd) and the peak RSS (VmHWM from /proc/<pid>/status), and counts the lines "
                     "in every file under the nodes' roots, rotated ones too, against the lines acknowledged.")
    return parser


def _node_flags(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in shlex.split(value)]


def _check(args: argparse.Namespace) -> None:
    """Usage errors in the arguments, before anything starts."""
    for mode in [m.strip() for m in args.mode.split(",") if m.strip()]:
        if mode not in MODES:
            raise UsageError(f"--mode: unknown mode {mode!r} (known: {', '.join(MODES)})")
    if args.line_bytes < 2 or args.clients < 1 or args.batch_lines < 1 or args.seconds <= 0:
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
    try:  # shlex refuses an unclosed quote
        for values in (args.mediator_flag, args.streamer_flag):
            _node_flags(values)
    except ValueError as exc:
        raise UsageError(f"--mediator-flag/--streamer-flag: {exc}") from None


def _start_nodes(args: argparse.Namespace, workdir: Path, nodes: list[_Proc]) -> str:
    """Start the bench's own streamer, or mediator and streamers, appending each to `nodes`; the target."""
    streamer_flags = _node_flags(args.streamer_flag)
    if not args.cluster:
        node = _Proc(["streamer", "-port", "0", "-host", "127.0.0.1", "-path", str(workdir / "logs"),
                      "-size", args.size, *streamer_flags], "streamer")
        nodes.append(node)
        return f"127.0.0.1:{node.wait_listening()}"
    mediator = _Proc(["mediator", "-port", "0", "-host", "127.0.0.1", "-health-interval", "1s",
                      *_node_flags(args.mediator_flag)], "mediator")
    nodes.append(mediator)
    target = f"127.0.0.1:{mediator.wait_listening()}"
    for index in range(args.cluster):
        nodes.append(_Proc(["streamer", "-port", "0", "-host", "127.0.0.1", "-mediator", target,
                            "-path", str(workdir / f"s{index}"), "-size", args.size, *streamer_flags],
                           f"streamer {index}"))
    for node in nodes[1:]:
        node.wait_listening()
    _wait_cluster(target, args.cluster)
    return target


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    show_progress = sys.stderr.isatty() and not args.json
    files = args.files or (8 if args.cluster else 1)
    first_load = key_load(0, args.clients, args.keys, files, args.keys_per_call, args.keys_per_folder,
                          args.batch_lines)
    workdir = Path(tempfile.mkdtemp(prefix="logstream-bench-"))
    nodes: list[_Proc] = []
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
            in_flight = args.in_flight or {"ping": 64, "unary": 64, "batch": 2, "stream": 4}[mode]
            plan = Plan(target, mode, args.seconds, args.line_bytes, args.batch_lines, in_flight, files,
                        time.time() + 1.5, args.ca, args.crt, args.pk, keys=args.keys,
                        keys_per_call=args.keys_per_call, keys_per_folder=args.keys_per_folder,
                        clients=args.clients, warmup=args.warmup)
            results.append(run_mode(plan, args.clients, show_progress))
        if not args.no_direct:
            direct = direct_append(workdir, args.seconds, args.line_bytes, args.batch_lines)
    finally:
        if sampler is not None:
            figures = sampler.stop()  # the last sample, while the nodes still run
        codes = [node.stop() for node in reversed(nodes)]
        if nodes:
            verified = _count_lines(workdir)
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
    if args.keep_files:
        report["kept_files"] = str(workdir)
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
    print(f"{'mode':<8}{'lines/s':>14}{'MB/s':>9}{'p50 ms':>10}{'p99 ms':>10}{'calls':>10}{'errors':>8}  vs direct")
    for row in report["results"]:
        ratio = report["ratio_to_direct"].get(row["mode"])
        print(f"{row['mode']:<8}{row['lines_per_s']:>14,}{row['mb_per_s']:>9}{row['p50_ms']:>10}{row['p99_ms']:>10}"
              f"{row['calls']:>10,}{row['errors']:>8}  {'' if ratio is None else f'{ratio:.1%}'}")
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


def _or_na(value: object) -> str:
    return "n/a" if value is None else str(value)
