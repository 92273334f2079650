"""The mediator end to end: real `logstream mediator` and `logstream streamer` processes on 127.0.0.1
sharing one root. Every acknowledged line is on disk (exactly once while nothing fails), in each
client's order per file, files are spread over all streamers; a SIGKILLed streamer costs no
acknowledged line and its files are served again within a few health intervals; a restarted
mediator gets its streamers back; mutual TLS on every hop; `logstream status --json`."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from helpers import Node, run_logstream, start_node

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.cluster_status import fetch_status
from logstream.node.tls import channel_credentials

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.e2e

INTERVAL_S = 1.0
TIMINGS = ["-health-interval", "1s"]  # lease 1.5s, ping timeout 0.5s
# A failed owner's files wait until its lease has surely expired: ping timeout + 1.1 x lease after
# the last ping, which came at most one interval before the failure.
FAILOVER_S = INTERVAL_S + 0.5 + 1.1 * 1.5


@dataclass
class Cluster:
    mediator: Node
    streamers: list[Node]
    root: Path
    tls: list[str] = field(default_factory=list)
    client_tls: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.mediator.address


def start_mediator(*extra: str, port: int = 0, tls: list[str] | None = None) -> Node:
    return start_node(["mediator", "-host", "127.0.0.1", "-port", str(port), *TIMINGS, *(tls or []), *extra])


def start_streamer(name: str, root: Path, mediator: str, tls: list[str] | None = None) -> Node:
    return start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-size", "-1",
                       "-id", name, "-mediator", mediator, *(tls or [])])


def wait_live(mediator: Node, count: int, start: int = 0, timeout_s: float = 20.0) -> None:
    mediator.wait_for(rf"is live \({count} live\)", timeout_s, start=start)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    root = tmp_path / "logs"
    with start_mediator() as mediator:
        streamers = [start_streamer(f"s{i}", root, mediator.address) for i in range(3)]
        try:
            wait_live(mediator, 3)
            yield Cluster(mediator, streamers, root)
        finally:
            for node in streamers:
                node.__exit__()


def read_lines(root: Path) -> dict[str, list[str]]:
    """Every file's lines, by path relative to the root (without ".log")."""
    return {str(file.relative_to(root))[:-4]: file.read_text().splitlines() for file in root.rglob("*.log")}


async def client(target: str, name: str, files: list[str], rounds: int, acked: list[str],
                 creds: grpc.ChannelCredentials | None = None, batch: bool = False,
                 stop_on_error: bool = True, latencies: list[float] | None = None) -> list[grpc.StatusCode]:
    """Write `rounds` numbered lines to each file (unary Log, or LogBatch with a chunk per file);
    record the lines acknowledged; return the error codes seen."""
    errors: list[grpc.StatusCode] = []
    options = [("grpc.max_send_message_length", 64 << 20)]
    channel = grpc.aio.secure_channel(target, creds, options) if creds else grpc.aio.insecure_channel(target, options)
    stub = pb_grpc.LogStreamerStub(channel)
    try:
        for n in range(rounds):
            try:
                if batch:
                    request = pb.LogBatchRequest(chunks=[
                        pb.LogChunk(path="app", filename=f, data=f"{name} {n}\n".encode()) for f in files])
                    await stub.LogBatch(request, timeout=30)
                    acked.extend(f"app/{f}:{name} {n}" for f in files)
                else:
                    for f in files:
                        started = time.monotonic()
                        await stub.Log(pb.LogRequest(path="app", filename=f, line=f"{name} {n}"), timeout=30)
                        acked.append(f"app/{f}:{name} {n}")
                        if latencies is not None:
                            latencies.append(time.monotonic() - started)
            except grpc.aio.AioRpcError as exc:
                errors.append(exc.code())
                if stop_on_error:
                    raise
                await asyncio.sleep(0.05)
    finally:
        await channel.close()
    return errors


def check_on_disk(root: Path, acked: list[str], exactly_once: bool) -> dict[str, list[str]]:
    files = read_lines(root)
    on_disk = Counter(f"{name}:{line}" for name, lines in files.items() for line in lines)
    missing = [line for line in acked if on_disk[line] == 0]
    assert not missing, f"{len(missing)} acknowledged lines lost, e.g. {missing[:5]}"
    if exactly_once:
        doubled = [line for line, count in on_disk.items() if count > 1]
        assert not doubled, f"lines written twice: {doubled[:5]}"
    for name, lines in files.items():  # each client's lines in its own order, per file
        seen: dict[str, int] = {}
        for line in lines:
            who, n = line.rsplit(" ", 1)
            assert int(n) >= seen.get(who, -1), f"{name}: {who}'s line {n} after {seen[who]}"
            seen[who] = int(n)
    return files


def test_64_files_from_concurrent_clients_land_once_in_order_spread_over_all(cluster: Cluster) -> None:
    files = [f"file{i:02d}" for i in range(64)]
    acked: list[str] = []

    async def main() -> None:
        await asyncio.gather(
            *(client(cluster.target, f"u{c}", files[c * 8:(c + 1) * 8], 10, acked) for c in range(8)),
            *(client(cluster.target, f"b{c}", files, 10, acked, batch=True) for c in range(4)),
        )

    asyncio.run(main())
    assert len(acked) == 8 * 8 * 10 + 4 * 64 * 10
    on_disk = check_on_disk(cluster.root, acked, exactly_once=True)
    assert sorted(on_disk) == [f"app/{f}" for f in files]
    status = fetch_status(cluster.target)
    owned = {s["id"]: set(s["files"]) for s in status["streamers"]}
    assert sorted(owned) == ["s0", "s1", "s2"] and all(owned.values()), owned
    assert set().union(*owned.values()) == {f"app/{f}" for f in files}
    assert sum(len(v) for v in owned.values()) == 64  # one owner per file
    assert status["counters"]["lines"] == len(acked)
    for streamer in cluster.streamers:
        assert streamer.stop() == 0
    assert cluster.mediator.stop() == 0
    assert "exiting after SIGTERM" in cluster.mediator.stderr


def test_sigkill_a_streamer_under_load_loses_no_acknowledged_line(cluster: Cluster) -> None:
    files = [f"k{i:02d}" for i in range(24)]
    acked: list[str] = []
    latencies: list[float] = []
    victim = cluster.streamers[1]
    victim_files: list[str] = []

    async def kill_later() -> None:
        # Once the victim owns files and is writing them (after the mediator's start-up grace).
        await asyncio.sleep(0.5)
        while not victim_files:
            status = await asyncio.to_thread(fetch_status, cluster.target)
            victim_files.extend(f for s in status["streamers"] if s["id"] == "s1" for f in s["files"])
            await asyncio.sleep(0.2)
        victim.proc.send_signal(signal.SIGKILL)

    async def main() -> list[list[grpc.StatusCode]]:
        loads = asyncio.gather(*(client(cluster.target, f"c{c}", files[c * 6:(c + 1) * 6], 120, acked,
                                        stop_on_error=False, latencies=latencies) for c in range(4)))
        await kill_later()
        assert not loads.done(), "the load was over before the kill"
        return await loads

    errors = asyncio.run(main())
    cluster.mediator.wait_for(r"streamer s1@\S+ removed")
    check_on_disk(cluster.root, acked, exactly_once=False)
    # Requests for the victim's files waited for its lease to lapse (-handoff-wait covers that) and
    # then went to a new owner: no error, and no request waited much longer than the fail-over bound.
    assert errors == [[], [], [], []], f"{errors}\n{cluster.mediator.stderr}"
    assert max(latencies) < FAILOVER_S + 1.5, f"{max(latencies):.2f}s\n{cluster.mediator.stderr}"
    moved = read_lines(cluster.root)
    assert all(any(line.endswith(" 119") for line in moved[f]) for f in [f"app/{f}" for f in files])
    status = fetch_status(cluster.target)
    alive = {s["id"]: s["alive"] for s in status["streamers"]}
    assert alive == {"s0": True, "s1": False, "s2": True}
    assert victim_files, "the victim owned no file when it was killed"
    assert set(victim_files) <= {f for s in status["streamers"] if s["alive"] for f in s["files"]}


def test_a_streamer_joining_under_load_takes_its_share_without_loss_or_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    files = [f"j{i:02d}" for i in range(32)]
    acked: list[str] = []
    with start_mediator() as mediator:
        streamers = [start_streamer(f"s{i}", root, mediator.address) for i in range(2)]
        try:
            wait_live(mediator, 2)

            async def join_later() -> None:
                await asyncio.sleep(1.5)
                streamers.append(await asyncio.to_thread(start_streamer, "s2", root, mediator.address))

            async def main() -> None:
                loads = asyncio.gather(*(client(mediator.address, f"c{c}", files[c * 8:(c + 1) * 8], 60, acked)
                                         for c in range(4)))
                await join_later()
                await asyncio.to_thread(wait_live, mediator, 3)
                assert not loads.done(), "the load was over before the join"
                await loads

            asyncio.run(main())
            mediator.wait_for(r"handed off \d+ keys from s\d@\S+ to s2@")
            check_on_disk(root, acked, exactly_once=True)
            owned = {s["id"]: s["files"] for s in fetch_status(mediator.address)["streamers"]}
            assert owned["s2"], owned
            assert "ABORTED" not in mediator.stderr
        finally:
            for node in streamers:
                node.__exit__()


def test_mediator_restart_streamers_come_back_and_logging_resumes(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    first = start_mediator()  # port 0; the restart reuses the port it reported
    port = first.port
    streamers = [start_streamer(f"s{i}", root, first.address) for i in range(3)]
    try:
        wait_live(first, 3)
        acked: list[str] = []
        asyncio.run(client(first.address, "before", [f"f{i}" for i in range(12)], 3, acked))
        first.stop(signal.SIGKILL)
        restarted_at = time.monotonic()
        with start_mediator(port=port) as second:
            wait_live(second, 3, timeout_s=15)
            asyncio.run(client(second.address, "after", [f"f{i}" for i in range(12)], 3, acked))
            resumed_s = time.monotonic() - restarted_at
            for streamer in streamers:
                streamer.wait_for("registering again")
                streamer.wait_for("released every key")
            check_on_disk(root, acked, exactly_once=True)
            assert resumed_s < 3 * INTERVAL_S + 8, resumed_s
            assert second.stop() == 0
    finally:
        for node in streamers:
            node.__exit__()


def test_mutual_tls_on_every_hop(tmp_path: Path, tls_files: TlsFiles) -> None:
    root = tmp_path / "logs"
    node_tls = ["-ca", str(tls_files.ca), "-crt", str(tls_files.node_crt), "-pk", str(tls_files.node_key)]
    with start_mediator(tls=node_tls) as mediator:
        streamers = [start_streamer(f"s{i}", root, mediator.address, node_tls) for i in range(2)]
        try:
            wait_live(mediator, 2)
            creds = channel_credentials(tls_files.ca, tls_files.client_crt, tls_files.client_key)
            acked: list[str] = []
            asyncio.run(client(mediator.address, "tls", ["a", "b", "c", "d"], 5, acked, creds))
            check_on_disk(root, acked, exactly_once=True)
            # Without a client certificate nothing gets in, not even a registration.
            anonymous = channel_credentials(tls_files.ca, None, None)

            async def register() -> None:
                async with grpc.aio.secure_channel(mediator.address, anonymous) as channel:
                    await pb_grpc.RegisterStub(channel).Register(
                        pb.RegisterRequest(id="intruder", addr="127.0.0.1:1"), timeout=5)

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                asyncio.run(register())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            done = run_logstream(["status", "-mediator", mediator.address, "--json", "-ca", str(tls_files.ca),
                                  "-crt", str(tls_files.client_crt), "-pk", str(tls_files.client_key)])
            assert done.returncode == 0, done.stderr
            assert sorted(s["id"] for s in json.loads(done.stdout)["streamers"]) == ["s0", "s1"]
        finally:
            for node in streamers:
                node.__exit__()


def test_status_json_and_table(cluster: Cluster) -> None:
    acked: list[str] = []
    asyncio.run(client(cluster.target, "st", ["x", "y", "z"], 2, acked))
    done = run_logstream(["status", "-mediator", cluster.target, "--json"])
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert set(status) >= {"streamers", "counters", "mediator_id"}
    for streamer in status["streamers"]:
        assert set(streamer) >= {"id", "addr", "alive", "files", "lines"}
        assert streamer["alive"] is True and isinstance(streamer["files"], list)
    assert sorted(f for s in status["streamers"] for f in s["files"]) == ["app/x", "app/y", "app/z"]
    assert status["counters"]["lines"] == 6 and status["counters"]["streamers_live"] == 3
    # Each streamer's own count, asked for at status time (not a ping's, up to an interval old).
    assert sum(s["lines"] for s in status["streamers"]) == 6
    table = run_logstream(["status", "-mediator", cluster.target])
    assert table.returncode == 0 and "ALIVE" in table.stdout and "s2" in table.stdout
    down = run_logstream(["status", "-mediator", "127.0.0.1:1", "-timeout", "1"])
    assert down.returncode == 1 and down.stderr.count("\n") == 1


def test_requests_before_any_streamer_and_bad_flags(tmp_path: Path) -> None:
    with start_mediator() as mediator:
        async def one() -> grpc.StatusCode:
            async with grpc.aio.insecure_channel(mediator.address) as channel:
                stub = pb_grpc.LogStreamerStub(channel)
                try:
                    await stub.Log(pb.LogRequest(filename="a", line="x"), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

        assert asyncio.run(one()) == grpc.StatusCode.UNAVAILABLE
        assert mediator.proc.poll() is None

        async def health_and_reflection() -> tuple[tuple[int, int], list[str]]:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
            from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

            async with grpc.aio.insecure_channel(mediator.address) as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="api.LogStreamer"), timeout=5)
                live = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5)
                call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
                await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
                await call.done_writing()
                reply = await call.read()
                return (health.status, live.status), [s.name for s in reply.list_services_response.service]

        status, services = asyncio.run(health_and_reflection())
        assert status == (2, 1)  # live (SERVING) but not ready (NOT_SERVING): no streamer to write to
        assert {"api.LogStreamer", "api.Register", "api.ClusterStatus", "grpc.health.v1.Health"} <= set(services)
        assert mediator.stop(signal.SIGINT) == 0
    bad = run_logstream(["mediator", "-health-interval", "soon"])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "-health-interval" in bad.stderr
    bad = run_logstream(["mediator", "-lease", "1s", "-health-interval", "2s"])
    assert bad.returncode == 2 and "-lease" in bad.stderr


def test_a_lease_ledger_spares_a_first_start_the_restart_grace(tmp_path: Path) -> None:
    """With -lease-file a first start places keys at once; a restart waits only for the leases the
    killed mediator may still have out (never more than ping timeout + 1.1 x lease)."""
    ledger = tmp_path / "mediator.lease"
    first = start_mediator("-lease-file", str(ledger))
    port = first.port
    streamer = start_streamer("s0", tmp_path / "logs", first.address)
    try:
        assert float(first.wait_for(r"placing keys after ([\d.]+)s").group(1)) == 0.0
        wait_live(first, 1)
        acked: list[str] = []
        asyncio.run(client(first.address, "first", ["f"], 3, acked))
        first.stop(signal.SIGKILL)
        with start_mediator("-lease-file", str(ledger), port=port) as second:
            grace_s = float(second.wait_for(r"placing keys after ([\d.]+)s").group(1))
            assert 0.0 < grace_s <= 0.5 + 1.1 * 1.5 + 0.05, grace_s
            wait_live(second, 1, timeout_s=15)
            asyncio.run(client(second.address, "second", ["f"], 3, acked))
            check_on_disk(tmp_path / "logs", acked, exactly_once=True)
    finally:
        streamer.__exit__()
