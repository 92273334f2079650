"""Overload: 32 clients stream to the mediator as fast as they can (LogStream, pipelined, and
LogBatch) for 20 s. The peak resident memory (VmHWM) of every process stays under a stated bound
(flow control, not unbounded queues), the only error is RESOURCE_EXHAUSTED, and every acknowledged
line is on disk."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from faultnodes import channel, mediator, procs, streamer, vm_hwm_kib, wait_live, wait_placing
from figures import Figures, Row
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc

pytestmark = pytest.mark.faults

CLIENTS = 32
DURATION_S = 20.0
LINES_PER_REQUEST = 500
LINE = b"%08d " + b"o" * 91  # 100 bytes with the newline
# The bounds we state (README): a node's peak RSS under any load. Idle, a node takes ~60 MiB;
# the mediator may hold a few forwards of -batch-bytes (4 MB) per streamer plus grpc's
# per-stream windows for 32 callers.
MEDIATOR_MAX_MIB = 256
STREAMER_MAX_MIB = 192
PIPELINE = 4  # requests a LogStream client has in flight (grpc's flow control holds the rest back)


def batch(seq: int) -> bytes:
    return b"".join(LINE % n + b"\n" for n in range(seq, seq + LINES_PER_REQUEST))


REPLY_WITHIN_S = 15.0  # a request still unanswered this long after the load stopped hangs


class Tally:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.acked: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.hung: list[str] = []


async def stream_client(target: str, key: str, stop: asyncio.Event, tally: Tally) -> None:
    async with channel(target) as chan:
        stub = pb_grpc.LogStreamerStub(chan)  # type: ignore[no-untyped-call]
        seq = 0
        while not stop.is_set():
            call = stub.LogStream()
            window = asyncio.Semaphore(PIPELINE)

            async def read() -> None:
                async for reply in call:
                    tally.acked[key] += reply.lines
                    window.release()

            reader = asyncio.create_task(read())
            try:
                while not stop.is_set():
                    # Wait for room in the window, or for the call to end (its error says why).
                    room = asyncio.ensure_future(window.acquire())
                    await asyncio.wait({room, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if not room.done():
                        room.cancel()
                        break
                    data = batch(seq)
                    seq += LINES_PER_REQUEST
                    tally.sent[key] += LINES_PER_REQUEST
                    await call.write(pb.LogBatchRequest(chunks=[pb.LogChunk(path="load", filename=key, data=data)]))
                if not reader.done():
                    await call.done_writing()
                try:
                    await asyncio.wait_for(asyncio.shield(reader), REPLY_WITHIN_S)
                except asyncio.TimeoutError:
                    tally.hung.append(f"{key}: LogStream, {tally.sent[key] - tally.acked[key]} lines unanswered")
                    call.cancel()
                    return
            except grpc.aio.AioRpcError as exc:
                tally.errors[exc.code().name] += 1
                await asyncio.sleep(0.05)
            except asyncio.InvalidStateError:
                tally.errors[(await call.code()).name] += 1
                await asyncio.sleep(0.05)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await reader


async def batch_client(target: str, key: str, stop: asyncio.Event, tally: Tally) -> None:
    async with channel(target) as chan:
        stub = pb_grpc.LogStreamerStub(chan)  # type: ignore[no-untyped-call]
        seq = 0
        while not stop.is_set():
            data = batch(seq)
            seq += LINES_PER_REQUEST
            tally.sent[key] += LINES_PER_REQUEST
            try:
                reply = await stub.LogBatch(pb.LogBatchRequest(chunks=[pb.LogChunk(path="load", filename=key, data=data)]),
                                            timeout=DURATION_S + REPLY_WITHIN_S)
                tally.acked[key] += reply.lines
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    tally.hung.append(f"{key}: LogBatch unanswered for {DURATION_S + REPLY_WITHIN_S:.0f}s")
                    return
                tally.errors[exc.code().name] += 1
                await asyncio.sleep(0.05)


def count_lines(path: Path) -> tuple[int, bool]:
    """Lines in a file, and whether it ends with a newline (no partial line)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines, last == b"\n"


def test_32_clients_at_full_speed_for_20s(tmp_path: Path, figures: Figures) -> None:
    roots = [tmp_path / f"s{i}" for i in range(3)]
    tally = Tally()
    peaks: dict[str, int] = {}
    with procs() as started:
        # The default health interval (5s, ping timeout 2s): a saturated 2-core machine answers
        # pings late, and a 300ms interval would fail streamers over for that alone.
        med = mediator(started, "-lease-file", str(tmp_path / "mediator.lease"), interval="5s")
        nodes = {"mediator": med}
        for i, root in enumerate(roots):
            nodes[f"s{i}"] = streamer(started, f"s{i}", root, med.address)
        wait_live(med.address, ["s0", "s1", "s2"])
        wait_placing(med.address)  # a fresh -lease-file: no start-up grace; this checks it

        async def main() -> None:
            stop = asyncio.Event()
            clients = [asyncio.create_task((stream_client if n % 2 == 0 else batch_client)(med.address, f"c{n:02d}", stop, tally))
                       for n in range(CLIENTS)]
            deadline = time.monotonic() + DURATION_S
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                for name, node in nodes.items():
                    assert node.proc.poll() is None, f"{name} died under load:\n{node.stderr}"
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), REPLY_WITHIN_S + 10)

        asyncio.run(main())
        for name, node in nodes.items():
            peaks[name] = vm_hwm_kib(node.proc.pid) // 1024
        notes = "\n".join(f"{name}: {line}" for name, node in nodes.items() for line in node.lines
                          if " WARNING " in line or " ERROR " in line)[-4000:]
    on_disk: Counter[str] = Counter()
    partial = []
    for root in roots:
        for path in (root / "load").glob("*.log"):  # not wait_placing's line
            lines, whole = count_lines(path)
            on_disk[path.name[:-4]] += lines
            if not whole:
                partial.append(str(path))
        shutil.rmtree(root)  # a couple of GB: do not leave them to pytest's last three runs
    acked = sum(tally.acked.values())
    lost = sum(max(0, tally.acked[k] - on_disk[k]) for k in tally.acked)
    unsent = sum(max(0, on_disk[k] - tally.sent[k]) for k in on_disk)
    figures.add(Row(f"overload: {CLIENTS} clients, {DURATION_S:.0f}s (peak RSS MiB: "
                    + ", ".join(f"{n} {p}" for n, p in peaks.items()) + ")",
                    acked, lost, 0, sum(on_disk.values()) - acked + lost, 0, None))
    assert acked > 0
    assert not tally.hung, f"{len(tally.hung)} clients got no answer: {tally.hung[:5]}"
    assert set(tally.errors) <= {"RESOURCE_EXHAUSTED"}, f"{dict(tally.errors)}\n{notes}"
    assert lost == 0 and unsent == 0 and not partial, (lost, unsent, partial[:3])
    assert peaks["mediator"] <= MEDIATOR_MAX_MIB, peaks
    assert all(peaks[f"s{i}"] <= STREAMER_MAX_MIB for i in range(3)), peaks
