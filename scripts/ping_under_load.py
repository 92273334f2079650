"""Ping latency of a standalone streamer while clients send it LogBatch requests naming many keys.

    .venv/bin/python scripts/ping_under_load.py --keys 20000 --seconds 10 --senders 2

Starts `logstream streamer -port 0` in a temporary root; each sender loops on LogBatch requests of
`--keys` chunks (one 100-byte line each, five key sets in turn); meanwhile a thread of its own
sends a compat Ping every 20 ms and records its round trip. Prints ping p50/p99/max and lines/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from logstream._proto import logstream_pb2 as pb  # noqa: E402
from logstream._proto import logstream_pb2_grpc as pb_grpc  # noqa: E402
from tests.e2e.helpers import start_node  # noqa: E402

LINE = b"x" * 99 + b"\n"


def ping(address: str, end: float, took: list[float]) -> None:
    """In a thread with its own channel, so the senders' work cannot delay a ping on this side."""
    with grpc.insecure_channel(address) as channel:
        pinger = pb_grpc.PingerStub(channel)
        while time.monotonic() < end:
            start = time.perf_counter()
            pinger.Ping(pb.PingRequest(a=6, b=7), timeout=30)
            took.append(time.perf_counter() - start)
            time.sleep(0.02)


async def send(address: str, requests: list[list[bytes]], end: float) -> int:
    written = 0
    async with grpc.aio.insecure_channel(address) as channel:
        batch = channel.unary_unary("/api.LogStreamer/LogBatch", request_serializer=bytes,
                                    response_deserializer=pb.LogBatchResponse.FromString)

        async def one(sender: int) -> None:
            nonlocal written
            turn = 0
            while time.monotonic() < end:
                reply = await batch(requests[sender][turn % 5], timeout=60)
                written += reply.lines
                turn += 1

        await asyncio.gather(*(one(i) for i in range(len(requests))))
    return written


def measure(address: str, keys: int, seconds: float, senders: int) -> tuple[list[float], int]:
    # Built once: the senders' CPU is spent in the streamer, not in making requests.
    requests = [[pb.LogBatchRequest(chunks=[pb.LogChunk(path=f"s{sender}/r{turn}", filename=f"k{k}", data=LINE)
                                            for k in range(keys)]).SerializeToString() for turn in range(5)]
                for sender in range(senders)]
    took: list[float] = []
    end = time.monotonic() + seconds
    pinger = threading.Thread(target=ping, args=(address, end, took))
    pinger.start()
    lines = asyncio.run(send(address, requests, end))
    pinger.join()
    return took, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node(["streamer", "-port", "0", "-path", str(Path(tmp) / "logs")])
        try:
            took, lines = measure(node.address, args.keys, args.seconds, args.senders)
        finally:
            node.stop()
    took.sort()
    print(f"keys/request {args.keys}, senders {args.senders}: {lines / args.seconds:,.0f} lines/s; "
          f"ping n={len(took)} p50 {statistics.median(took) * 1000:.1f} ms, "
          f"p99 {took[int(len(took) * 0.99) - 1] * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
