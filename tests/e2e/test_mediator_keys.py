"""The mediator's key table end to end (real processes on 127.0.0.1): keys that go idle are
forgotten once their streamers closed their files, so the table returns to its floor; a full
table (-max-keys) refuses a new key with RESOURCE_EXHAUSTED naming the limit and still serves
known keys."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from helpers import start_node

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.cluster_status import fetch_status

pytestmark = pytest.mark.e2e

KEYS = 2000
MAX_KEYS = 2500  # not reached here
KEY_IDLE_S = 1.0
IDLE_CLOSE_S = 1.0


async def write_keys(target: str, names: list[str], tag: str) -> None:
    """One line to each named file, 250 files a LogBatch call."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.LogStreamerStub(channel)
        for start in range(0, len(names), 250):
            await stub.LogBatch(pb.LogBatchRequest(chunks=[
                pb.LogChunk(path="tenant", filename=name, data=f"{tag}\n".encode())
                for name in names[start:start + 250]]), timeout=30)


def counters(target: str) -> dict[str, int]:
    return dict(fetch_status(target)["counters"])


def test_idle_keys_leave_the_table_within_a_bounded_time(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "0.5s",
                     "-key-idle", f"{KEY_IDLE_S}s", "-max-keys", str(MAX_KEYS)]) as mediator:
        streamers = [start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-size", "-1",
                                 "-id", f"s{i}", "-mediator", mediator.address, "-idle-close", f"{IDLE_CLOSE_S}s"])
                     for i in range(2)]
        try:
            mediator.wait_for(r"is live \(2 live\)", 20)
            names = [f"f{i}" for i in range(KEYS)]
            asyncio.run(write_keys(mediator.address, names, "first"))
            assert counters(mediator.address)["keys_owned"] == KEYS

            # Idle: the streamers close the files (-idle-close, checked each maintenance tick of at
            # most 1s), report it in their next ping answers, and the key idle time runs out.
            started = time.monotonic()
            bound_s = KEY_IDLE_S + IDLE_CLOSE_S + 1.0 + 4 * 0.5 + 20.0  # + slack for a loaded machine
            while (owned := counters(mediator.address)["keys_owned"]) > 0:
                assert time.monotonic() - started < bound_s, f"{owned} keys still owned after {bound_s}s idle"
                time.sleep(0.2)
            assert counters(mediator.address)["keys_forgotten"] >= KEYS

            # Forgotten keys are placed again like new ones; every line of both rounds is on disk.
            asyncio.run(write_keys(mediator.address, names, "second"))
            for name in names[::97]:
                assert (root / "tenant" / f"{name}.log").read_text() == "first\nsecond\n"

        finally:
            for node in streamers:
                node.__exit__()


def test_a_full_table_refuses_a_new_key_and_still_serves_known_ones(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "0.5s",
                     "-key-idle", "1h", "-max-keys", "10"]) as mediator:
        with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-size", "-1",
                         "-id", "s0", "-mediator", mediator.address]):
            mediator.wait_for(r"is live \(1 live\)", 20)
            asyncio.run(write_keys(mediator.address, [f"f{i}" for i in range(10)], "x"))
            with pytest.raises(grpc.RpcError) as caught:
                asyncio.run(write_keys(mediator.address, ["one-too-many"], "x"))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            assert "10 keys (-max-keys)" in caught.value.details()  # type: ignore[attr-defined]
            assert not (root / "tenant" / "one-too-many.log").exists()
            asyncio.run(write_keys(mediator.address, ["f1"], "y"))  # a known key still goes through
            assert (root / "tenant" / "f1.log").read_text() == "x\ny\n"
            assert counters(mediator.address)["keys_owned"] == 10
