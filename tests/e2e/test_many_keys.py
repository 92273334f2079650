"""Many distinct files through the cluster: a mediator and two streamers under `ulimit -n 1024` with
the default -max-open-files, `-health-interval 1s`, 50,000 keys sent as LogBatch calls. No descriptor
runs out, no streamer is removed or loses its lease (pings are answered while requests naming
thousands of files are written), and every acknowledged line is on disk exactly once."""

from __future__ import annotations

import asyncio
import json
import resource
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from helpers import Node, run_logstream, start_node

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

KEYS = 50_000
PER_CALL = 2_500
CONCURRENT = 4
PING_TIMEOUT_S = 0.5  # the mediator's with -health-interval 1s


def limit_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def send_round(target: str, round_: int, acked: list[str]) -> None:
    """Every key once, PER_CALL keys a call, CONCURRENT calls at a time; `acked` gets what succeeded."""
    calls = [list(range(start, min(start + PER_CALL, KEYS))) for start in range(0, KEYS, PER_CALL)]
    async with grpc.aio.insecure_channel(target, [("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.LogStreamerStub(channel)

        async def worker() -> None:
            while calls:
                keys = calls.pop()
                request = pb.LogBatchRequest(chunks=[
                    pb.LogChunk(path=f"t{k % 50}", filename=f"k{k}", data=f"k{k} {round_}\n".encode()) for k in keys])
                reply = await stub.LogBatch(request, timeout=30)
                assert reply.lines == len(keys)
                acked.extend(f"t{k % 50}/k{k}:k{k} {round_}" for k in keys)

        await asyncio.gather(*(worker() for _ in range(CONCURRENT)))


def ping_each(nodes: list[Node], stop: threading.Event, slowest: list[float]) -> None:
    """Compat pings to every streamer every 50 ms, from a thread of their own; the slowest round trip."""
    channels = [grpc.insecure_channel(node.address) for node in nodes]
    try:
        stubs = [pb_grpc.PingerStub(channel) for channel in channels]
        while not stop.is_set():
            for stub in stubs:
                started = time.monotonic()
                stub.Ping(pb.PingRequest(a=3, b=4), timeout=10)
                slowest[0] = max(slowest[0], time.monotonic() - started)
            stop.wait(0.05)
    finally:
        for channel in channels:
            channel.close()


def test_50000_keys_under_ulimit_1024_no_emfile_no_removal_every_ack_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    timings = ["-health-interval", "1s"]
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", *timings], preexec_fn=limit_1024) as mediator:
        streamers = [start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-size", "-1",
                                 "-id", f"s{i}", "-mediator", mediator.address], preexec_fn=limit_1024)
                     for i in range(2)]
        try:
            mediator.wait_for(r"is live \(2 live\)", 20)
            acked: list[str] = []
            slowest = [0.0]
            stop = threading.Event()
            pinger = threading.Thread(target=ping_each, args=(streamers, stop, slowest))
            pinger.start()
            started = time.monotonic()
            try:
                for round_ in range(2):
                    asyncio.run(send_round(mediator.address, round_, acked))
            except grpc.RpcError as exc:
                logs = "\n".join(node.stderr for node in [mediator, *streamers])
                raise AssertionError(f"a write failed ({exc}); the nodes' logs:\n{logs[-6000:]}") from None
            finally:
                stop.set()
                pinger.join(15)
            took = time.monotonic() - started
            done = run_logstream(["status", "-mediator", mediator.address, "--json"])
            assert done.returncode == 0, done.stderr
            status = json.loads(done.stdout)
        finally:
            for node in streamers:
                node.__exit__()
    assert len(acked) == 2 * KEYS
    logs = "\n".join(node.stderr for node in [mediator, *streamers])
    warnings = "\n".join(line for line in logs.splitlines() if "WARNING" in line or "ERROR" in line)
    assert [s["alive"] for s in status["streamers"]] == [True, True], f"{status['streamers']}\n{warnings}"
    assert status["counters"]["removals"] == 0, f"{status['counters']}\n{warnings}"
    for needle in ("Too many open files", "lease lapsed", "removed"):
        assert needle not in logs, f"{needle!r} in the logs:\n{logs[-3000:]}"
    # A streamer's own pings came back well within the mediator's ping timeout under that load.
    assert slowest[0] < PING_TIMEOUT_S, f"slowest ping {slowest[0] * 1000:.0f} ms (load of {took:.1f} s)"
    on_disk = Counter(f"{file.relative_to(root).with_suffix('')}:{line}"
                      for file in root.rglob("*.log") for line in file.read_text().splitlines())
    assert sum(on_disk.values()) == len(acked) and set(on_disk) == set(acked)
