"""Real mediator and streamer processes for the fault scenarios: start them on loopback, wait for
them through the mediator's status RPC (not log wording), drive load while a fault coroutine runs,
and always clean up, even after a failure (a stopped process is continued, then killed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # tests/e2e/helpers.py
from helpers import Node, start_node  # noqa: E402

from history import Driver, SizeSampler, Verdict, check, read_roots  # noqa: E402
from logstream._proto import logstream_pb2 as pb  # noqa: E402
from logstream._proto import logstream_pb2_grpc as pb_grpc  # noqa: E402
from logstream.node.cluster_status import StatusError, fetch_status  # noqa: E402

INTERVAL = "300ms"
INTERVAL_S = 0.3
# Mediator defaults at -health-interval 300ms: ping timeout 0.15s, lease 0.45s; a failed owner's
# keys wait ping timeout + 1.1 x lease after its last ping.
LEASE_S = 0.45
SURELY_EXPIRED_S = INTERVAL_S + 0.15 + 1.1 * LEASE_S

# A client that notices a restarted server quickly (grpc's default reconnect backoff grows to 120s).
CLIENT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]


def channel(target: str, creds: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    if creds is None:
        return grpc.aio.insecure_channel(target, options=CLIENT_OPTIONS)
    return grpc.aio.secure_channel(target, creds, options=CLIENT_OPTIONS)


@dataclass
class Procs:
    """Every process a scenario started; `close` ends them all (SIGCONT first: a stopped process
    would otherwise hold its ports and files until SIGKILL is delivered)."""

    nodes: list[Node] = field(default_factory=list)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                try:
                    os.kill(node.proc.pid, signal.SIGCONT)
                    node.proc.kill()
                except ProcessLookupError:
                    pass
            try:
                node.stop(signal.SIGKILL, timeout_s=10)
            except AssertionError:
                pass


@contextmanager
def procs() -> Iterator[Procs]:
    started = Procs()
    try:
        yield started
    finally:
        started.close()


def mediator(started: Procs, *extra: str, port: int = 0, interval: str = INTERVAL) -> Node:
    return started.add(start_node(["mediator", "-host", "127.0.0.1", "-port", str(port),
                                   "-health-interval", interval, *extra]))


def streamer(started: Procs, name: str, root: Path, mediator_addr: str | None, *extra: str) -> Node:
    joined = ["-mediator", mediator_addr] if mediator_addr else []
    return started.add(start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root),
                                   "-size", "-1", "-id", name, *joined, *extra]))


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.05) -> float:
    """Poll `predicate` until true; the seconds it took. AssertionError naming `what` after the timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(period_s)
    return time.monotonic() - started


def status(target: str, creds: grpc.ChannelCredentials | None = None) -> dict[str, Any] | None:
    try:
        got: dict[str, Any] = fetch_status(target, creds, timeout_s=2.0)
    except StatusError:
        return None
    return got


def live_ids(target: str, creds: grpc.ChannelCredentials | None = None) -> set[str]:
    got = status(target, creds)
    return set() if got is None else {s["id"] for s in got["streamers"] if s["alive"]}


def wait_live(target: str, ids: Sequence[str], timeout_s: float = 15.0,
              creds: grpc.ChannelCredentials | None = None) -> None:
    wait_until(f"streamers {sorted(ids)} live at {target}", lambda: set(ids) <= live_ids(target, creds), timeout_s)


WARM_UP_PATH = "warm-up"  # where wait_placing writes; not part of any history


def wait_placing(target: str, timeout_s: float = 20.0, creds: grpc.ChannelCredentials | None = None) -> float:
    """Wait until the mediator writes: a fresh one places no key until leases a predecessor may
    have granted are surely over (ping timeout + 1.1 x lease; 10s at the default interval).
    A warm-up line goes to WARM_UP_PATH; the seconds it took."""

    async def once() -> bool:
        send = Sender(target, 2.0, creds)
        try:
            return await send(WARM_UP_PATH, "up", "warm-up") == "OK"
        finally:
            await send.close()

    return wait_until(f"{target} placing keys", lambda: asyncio.run(once()), timeout_s, period_s=0.2)


def owners(target: str) -> dict[str, str]:
    """key -> id of the live streamer that owns it now."""
    got = status(target) or {"streamers": []}
    return {key: s["id"] for s in got["streamers"] if s["alive"] for key in s["files"]}


class Sender:
    """Unary `Log` to one target on one channel; answers the status code's name ("OK")."""

    def __init__(self, target: str, timeout_s: float = 10.0, creds: grpc.ChannelCredentials | None = None) -> None:
        self.timeout_s = timeout_s
        self._channel = channel(target, creds)
        self._stub = pb_grpc.LogStreamerStub(self._channel)  # type: ignore[no-untyped-call]

    async def __call__(self, path: str, filename: str, line: str) -> str:
        try:
            await self._stub.Log(pb.LogRequest(path=path, filename=filename, line=line), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return "OK"

    async def close(self) -> None:
        await self._channel.close()


@dataclass
class Run:
    """One scenario's history and verdict."""

    driver: Driver
    verdict: Verdict
    sampler: SizeSampler


def load_with_fault(target: str, keys: Sequence[str], roots: dict[str, Path],
                    fault: Callable[[Driver], Awaitable[None]], timeout_s: float = 10.0,
                    creds: grpc.ChannelCredentials | None = None, settle_s: float = 0.5) -> Run:
    """Drive `keys` through `target` while `fault(driver)` runs; stop the load `settle_s` after the
    fault returns; then read every root and check the history."""
    driver = Driver(keys)
    sampler = SizeSampler(roots).start()

    async def main() -> None:
        stop = asyncio.Event()
        send = Sender(target, timeout_s, creds)
        load = asyncio.create_task(driver.run(send, stop))
        try:
            await fault(driver)
            await asyncio.sleep(settle_s)
        finally:
            stop.set()
            await load
            await send.close()

    try:
        asyncio.run(main())
    finally:
        sampler.stop()
    written = [w for w in read_roots(roots, sampler) if not w.file.startswith(WARM_UP_PATH + "/")]
    return Run(driver, check(driver.ops, written), sampler)


async def until(what: str, predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.02) -> float:
    """`wait_until` for coroutines (the load keeps running meanwhile)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(period_s)
    return time.monotonic() - started


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a running process (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")
