"""The mediator keeps its background work alive and keeps the Go original's streamer, end to end.

- Streamers SIGKILLed and restarted many times while pings and forwards are in flight (health
  interval 200ms): afterwards every write succeeds through the survivors, the health loop still runs
  (a streamer killed for good shows as not alive) and /healthz says ok.
- An emulation of the Go original's streamer (serves only `LogStreamer/Log` and `Pinger/Ping`,
  registers once, *before* it listens) behind a real `logstream mediator`: admitted every time, and
  lines sent to the mediator end up in its files.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from helpers import Node, start_node

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.cluster_status import fetch_status

pytestmark = pytest.mark.e2e


def start_streamer(name: str, root: Path, mediator: str) -> Node:
    return start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-size", "-1",
                       "-id", name, "-mediator", mediator])


async def write_all(target: str, files: list[str], tag: str, timeout_s: float = 10.0) -> list[str]:
    """One unary Log per file, concurrently; the errors (empty when all were acknowledged)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.LogStreamerStub(channel)

        async def one(name: str) -> str | None:
            try:
                await stub.Log(pb.LogRequest(path="app", filename=name, line=tag), timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                return f"{name}: {exc.code().name}: {exc.details()}"
            return None

        return [error for error in await asyncio.gather(*(one(f) for f in files)) if error is not None]


def test_streamers_killed_while_pings_are_in_flight_leave_the_health_loop_running(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    files = [f"f{i:02d}" for i in range(24)]
    # A forward deadline shorter than the ping deadline: when a streamer stops answering, its
    # forward fails first and closes its channel while a ping is still in flight on it (the race
    # that ended main's health loop). -handoff-wait lets requests wait out each fail-over.
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "200ms",
                     "-ping-timeout", "150ms", "-forward-timeout", "60ms", "-handoff-wait", "5s",
                     "-pprof", "-pport", "0"]) as mediator:
        debug_url = mediator.wait_for(r"debug server listening on (http://\S+)").group(1)
        streamers = [start_streamer(f"s{i}", root, mediator.address) for i in range(3)]
        try:
            mediator.wait_for(r"is live \(3 live\)")

            async def churn() -> None:
                # s1 and s2 in turn stop answering under load (SIGSTOP: forwards and pings hang),
                # are SIGKILLed and come back on a new port.
                stop = asyncio.Event()

                async def load() -> None:
                    n = 0
                    while not stop.is_set():
                        await write_all(mediator.address, files, f"load {n}", timeout_s=5.0)
                        n += 1

                loader = asyncio.create_task(load())
                for round_ in range(8):
                    victim = streamers[1 + round_ % 2]
                    await asyncio.sleep(random.uniform(0.2, 0.4))
                    victim.proc.send_signal(signal.SIGSTOP)
                    await asyncio.sleep(random.uniform(0.1, 0.3))
                    victim.stop(signal.SIGKILL)
                    streamers[1 + round_ % 2] = await asyncio.to_thread(
                        start_streamer, f"s{1 + round_ % 2}", root, mediator.address)
                stop.set()
                await loader

            asyncio.run(churn())
            mediator.wait_for(r"ping to \S+ cancelled: its channel was closed", 0)  # the race happened
            streamers[2].stop(signal.SIGKILL)  # for good, and no writes: only a ping can notice
            deadline = time.monotonic() + 5
            while True:
                alive = {s["id"]: s["alive"] for s in fetch_status(mediator.address)["streamers"]}
                if alive.get("s2") is False and alive.get("s0") and alive.get("s1"):
                    break
                assert time.monotonic() < deadline, f"status never showed s2 dead: {alive}\n{mediator.stderr}"
                time.sleep(0.1)
            # Survivors: s0 and the last s1. Every write succeeds (s2's files wait for its lease).
            errors = asyncio.run(write_all(mediator.address, files, "after", timeout_s=15.0))
            assert not errors, f"{errors[:3]}\n{mediator.stderr}"
            with urllib.request.urlopen(debug_url + "/healthz", timeout=5) as reply:
                assert reply.status == 200
            with urllib.request.urlopen(debug_url + "/debug/stacks", timeout=5) as reply:
                assert "health_loop" in reply.read().decode()
            assert "background task" not in mediator.stderr, mediator.stderr
            assert mediator.stop() == 0
        finally:
            for node in streamers:
                node.__exit__()
    on_disk = {p.stem: p.read_text().splitlines() for p in (root / "app").glob("*.log")}
    assert all("after" in on_disk[f] for f in files)


class GoStreamer:
    """The Go original's streamer, emulated from its protocol: only `Log` and `Ping`, no leases,
    one Register call at start, made before it listens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines = 0

    async def log(self, request: pb.LogRequest, context: grpc.aio.ServicerContext) -> pb.LogResponse:
        folder = self.root / request.path
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{request.filename}.log", "a") as out:
            out.write(request.line + "\n")
        self.lines += 1
        return pb.LogResponse(res="Success")

    async def ping(self, request: pb.PingRequest, context: grpc.aio.ServicerContext) -> pb.PingResponse:
        return pb.PingResponse(res=(request.a * request.b + 2**31) % 2**32 - 2**31)

    def server(self) -> grpc.aio.Server:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("api.LogStreamer", {"Log": grpc.unary_unary_rpc_method_handler(
                self.log, pb.LogRequest.FromString, pb.LogResponse.SerializeToString)}),
            grpc.method_handlers_generic_handler("api.Pinger", {"Ping": grpc.unary_unary_rpc_method_handler(
                self.ping, pb.PingRequest.FromString, pb.PingResponse.SerializeToString)}),
        ))
        return server


@pytest.mark.parametrize("run", range(3))
def test_the_go_streamer_registering_before_it_listens_is_admitted_and_written_to(tmp_path: Path, run: int) -> None:
    root = tmp_path / "go-logs"
    files = [f"g{i}" for i in range(10)]
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "1s"]) as mediator:

        async def main() -> list[str]:
            go = GoStreamer(root)
            server = go.server()
            port = server.add_insecure_port("127.0.0.1:0")  # bound; not yet accepting
            async with grpc.aio.insecure_channel(mediator.address) as channel:
                reply = await pb_grpc.RegisterStub(channel).Register(
                    pb.RegisterRequest(id="go", addr=f"127.0.0.1:{port}"), timeout=5)
                assert reply.res == "Success"
            await asyncio.sleep(random.uniform(0.0, 1.5))  # the original's start-up, in the race window
            await server.start()
            try:
                await asyncio.to_thread(mediator.wait_for, r"streamer go@\S+ is live", 10.0)
                return await write_all(mediator.address, files, f"line {run}")
            finally:
                await server.stop(0)

        errors = asyncio.run(main())
        assert not errors, f"{errors}\n{mediator.stderr}"
        assert "removed" not in mediator.stderr, mediator.stderr
        warnings = [line for line in mediator.lines if "speaks only the original protocol" in line]
        assert len(warnings) == 1 and "one-writer" in warnings[0]
        assert mediator.stop() == 0
    assert {p.stem: p.read_text() for p in (root / "app").glob("*.log")} == {f: f"line {run}\n" for f in files}


@pytest.mark.parametrize("ledger", [False, True], ids=["no-ledger", "lease-file"])
def test_a_restarted_mediator_writes_existing_keys_within_one_health_interval(tmp_path: Path, ledger: bool) -> None:
    """Streamers report the keys they held to the new mediator, which keeps them there instead of
    waiting out its start-up grace (10.25s at these settings without -lease-file)."""
    root = tmp_path / "logs"
    files = [f"k{i}" for i in range(8)]
    extra = ["-lease-file", str(tmp_path / "m.lease")] if ledger else []
    args = ["mediator", "-host", "127.0.0.1", "-health-interval", "5s", *extra]
    with start_node([*args, "-port", "0"]) as first:
        streamers = [start_streamer(f"s{i}", root, first.address) for i in range(2)]
        try:
            first.wait_for(r"is live \(2 live\)")
            assert not asyncio.run(write_all(first.address, files, "before"))
            assert first.stop() == 0  # what `logstream restart` does
            with start_node([*args, "-port", str(first.port)], wait=False) as second:
                second.wait_for(r"(?<!debug server )listening on")
                started = time.monotonic()
                errors = asyncio.run(write_all(first.address, files, "after", timeout_s=30.0))
                elapsed = time.monotonic() - started
                assert not errors, f"{errors}\n{second.stderr}"
                assert elapsed < 5.0, f"{elapsed:.2f}s to write again\n{second.stderr}"
                assert "kept" in second.stderr, second.stderr
                assert second.stop() == 0
        finally:
            for node in streamers:
                node.__exit__()
    on_disk = {p.stem: p.read_text().splitlines() for p in (root / "app").glob("*.log")}
    assert all(on_disk[f] == ["before", "after"] for f in files), on_disk
