"""`logstream bench`'s client processes: what each one sends (a Plan), how fast and how often it was
answered (a Result), and the pool of spawned processes that runs one mode."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstream.commands.bench_histogram import Histogram
from logstream.commands.bench_keys import key_load, spread

# ping: the gRPC round trip alone, no write; open: LogBatch calls on a schedule (--rate), open loop
MODES = ("ping", "unary", "batch", "stream", "open")
OPEN_MAX_IN_FLIGHT = 1000  # per client; past it a call starts late, and its lateness is measured


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
    rate: float = 0.0  # --rate: lines/s over all clients, for the open mode


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
    histogram: Histogram = field(default_factory=Histogram)  # open mode: µs from each call's scheduled time
    offered_lines_per_s: float = 0.0  # open mode: the rate asked for

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
            **self._percentiles(lat),
            **({"first_error": self.first_error} if self.first_error else {}),
            **({"warmup_lines": self.warmup_lines} if self.warmup_lines else {}),
            **({"offered_lines_per_s": round(self.offered_lines_per_s)} if self.offered_lines_per_s else {}),
        }

    def _percentiles(self, lat: Sequence[float]) -> dict[str, float]:
        if self.histogram.counts:  # open mode: from the scheduled time, with the histogram's precision
            return {f"p{name}_ms": round(self.histogram.percentile(q) / 1000, 3)
                    for name, q in (("50", 0.50), ("99", 0.99), ("999", 0.999))}
        return {"p50_ms": round(_percentile(lat, 0.50), 3), "p99_ms": round(_percentile(lat, 0.99), 3),
                "p999_ms": round(_percentile(lat, 0.999), 3)}


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def client_targets(target: str, client: int) -> list[str]:
    """The targets of a comma list in the order client `client` tries them: its own first (client i
    starts on target i mod n), the others after it, so that clients spread over several mediators."""
    from logstream.client import parse_targets

    targets = parse_targets(target)
    first = client % len(targets)
    return targets[first:] + targets[:first]


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
    from logstream.client import RETRYABLE
    from logstream.node import tls
    from logstream.node.channel import aio_channel

    creds = tls.channel_credentials(*(Path(p) if p else None for p in (plan.ca, plan.crt, plan.pk)))
    channels = [aio_channel(target, creds) for target in client_targets(plan.target, client)]
    channel = channels[0]
    lines = make_lines(client, plan.batch_lines if plan.mode != "unary" else 1000, plan.line_bytes)
    load = key_load(client, plan.clients, plan.keys, plan.files, plan.keys_per_call, plan.keys_per_folder,
                    plan.batch_lines)
    result = Result(plan.mode, 1)
    if plan.mode == "ping":
        requests = [pb.PingRequest(a=3, b=4).SerializeToString()]
        lines_per_call, bytes_per_call = 1, 0
        calls = [each.unary_unary("/api.Pinger/Ping", request_serializer=None,
                                  response_deserializer=pb.PingResponse.FromString) for each in channels]
    elif plan.mode == "unary":
        # one line a call, the keys in turn
        requests = [pb.LogRequest(path=load.keys[i % len(load.keys)][0], filename=load.keys[i % len(load.keys)][1],
                                  line=lines[i % len(lines)][:-1].decode()).SerializeToString()
                    for i in range(max(len(lines), len(load.keys)))]
        lines_per_call, bytes_per_call = 1, plan.line_bytes
        calls = [each.unary_unary("/api.LogStreamer/Log", request_serializer=None,
                                  response_deserializer=pb.LogResponse.FromString) for each in channels]
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
        calls = [each.unary_unary("/api.LogStreamer/LogBatch", request_serializer=None,
                                  response_deserializer=pb.LogBatchResponse.FromString) for each in channels]
    call = calls[0]
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
            for each in channels:
                await each.close()
            return result
    await asyncio.sleep(max(0.0, plan.start_at - time.time()))
    started = time.perf_counter()
    deadline = started + plan.seconds
    latencies = result.latencies_ms

    current = [0]  # the target the unary calls go to; the next one after a retryable failure

    async def unary_worker(offset: int) -> None:
        index = offset
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            used = current[0]
            try:
                await calls[used](requests[index % len(requests)])
            except grpc.aio.AioRpcError as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{exc.code().name}: {exc.details()}"
                if exc.code() in RETRYABLE and current[0] == used:  # once for the calls failing together
                    current[0] = (used + 1) % len(calls)
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

    async def open_loop() -> None:
        """Calls on a fixed schedule, each in its own task: a slow answer delays no later call, and
        latency counts from the scheduled time, so waiting for the server is never omitted."""
        interval = lines_per_call * plan.clients / plan.rate
        window = asyncio.Semaphore(OPEN_MAX_IN_FLIGHT)
        result.offered_lines_per_s = plan.rate / plan.clients

        async def one(request: bytes, scheduled: float) -> None:
            try:
                await call(request)
            except grpc.aio.AioRpcError as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{exc.code().name}: {exc.details()}"
                return
            finally:
                window.release()
            result.histogram.record(int((time.perf_counter() - scheduled) * 1_000_000))
            result.calls += 1

        async with asyncio.TaskGroup() as calls:  # owns every call; `one` never raises
            index = 0
            while (scheduled := started + index * interval) < deadline:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                await window.acquire()
                calls.create_task(one(requests[index % len(requests)], scheduled))
                index += 1

    reporter = asyncio.create_task(report())
    if plan.mode == "stream":
        await stream_worker()
    elif plan.mode == "open":
        await open_loop()
    else:
        await asyncio.gather(*(unary_worker(i) for i in range(plan.in_flight)))
    result.seconds = time.perf_counter() - started
    reporter.cancel()
    progress[client] = result.calls * lines_per_call
    result.lines = result.calls * lines_per_call
    result.bytes = result.calls * bytes_per_call
    if len(latencies) > 200_000:  # keep the result small to send back; a systematic sample
        result.latencies_ms = sorted(latencies)[:: len(latencies) // 100_000]
    for each in channels:
        await each.close()
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
        total.histogram.merge(part.histogram)
        total.offered_lines_per_s += part.offered_lines_per_s
    return total
