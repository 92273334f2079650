"""Time from a restarted mediator's "listening on" to 12 existing files written again.

    python scripts/measure_restart.py 1s,5s 3     # intervals, runs each; with and without -lease-file

3 streamers; 12 files written just before the restart (so their owners hold them open); the mediator
is stopped with SIGTERM (as `logstream restart` does) and started again on the same port. A write
that gets UNAVAILABLE is retried at once, as a client with retries would.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from helpers import start_node  # noqa: E402

from logstream._proto import logstream_pb2 as pb  # noqa: E402
from logstream._proto import logstream_pb2_grpc as pb_grpc  # noqa: E402

FILES = [f"k{i}" for i in range(12)]


async def write(target: str, name: str, timeout_s: float = 60.0) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.LogStreamerStub(channel)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await stub.Log(pb.LogRequest(path="app", filename=name, line="x"), timeout=timeout_s)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)


async def write_all(target: str) -> None:
    await asyncio.gather(*(write(target, name) for name in FILES))


def run(interval: str, ledger: bool) -> float:
    tmp = Path(tempfile.mkdtemp())
    extra = ["-lease-file", str(tmp / "m.lease")] if ledger else []
    first = start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", interval, *extra])
    streamers = [start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp / "logs"),
                             "-id", f"s{i}", "-mediator", first.address]) for i in range(3)]
    try:
        first.wait_for(r"is live \(3 live\)", 30)
        for _ in range(3):
            asyncio.run(write_all(first.address))
        first.stop(signal.SIGTERM)
        second = start_node(["mediator", "-host", "127.0.0.1", "-port", str(first.port), "-health-interval",
                             interval, *extra], wait=False)
        second.wait_for(r"(?<!debug server )listening on", 30)
        started = time.monotonic()
        asyncio.run(write_all(first.address))
        elapsed = time.monotonic() - started
        second.stop()
        return elapsed
    finally:
        for node in streamers:
            node.stop()


if __name__ == "__main__":
    for interval in sys.argv[1].split(","):
        for ledger in (False, True):
            times = [run(interval, ledger) for _ in range(int(sys.argv[2]))]
            print(f"-health-interval {interval} -lease-file {'yes' if ledger else 'no'}: "
                  + " ".join(f"{t:.2f}s" for t in times), flush=True)
