"""Only the cluster steers a streamer, with real processes on 127.0.0.1: a clustered streamer writes
only what its current mediator forwards (FAILED_PRECONDITION naming the mediator otherwise, nothing
written, said once at the default level); with a cluster token or mutual TLS, forged pings,
releases and registrations change nothing (PERMISSION_DENIED); a root deleted while writing costs
no acknowledged line, and one that cannot be re-created is a definite refusal (not ready: grpc
health of api.LogStreamer NOT_SERVING until it is back, while "" stays SERVING); and our streamer
works under a mediator that speaks only the original's protocol (legacy mode)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Node, start_node

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import call_metadata
from logstream.node.cluster_status import fetch_status
from logstream.node.tls import channel_credentials

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.e2e

TIMINGS = ["-health-interval", "1s"]  # lease 1.5s
Metadata = Sequence[tuple[str, str]]


def start_mediator(*extra: str) -> Node:
    return start_node(["mediator", "-host", "127.0.0.1", "-port", "0", *TIMINGS, *extra])


def start_streamer(name: str, root: Path, mediator: str, *extra: str) -> Node:
    return start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", name,
                       "-mediator", mediator, *extra])


def channel(target: str, creds: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(target, creds) if creds else grpc.aio.insecure_channel(target)


async def code_of(call: object) -> grpc.StatusCode | None:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return None


async def direct_writes(target: str, creds: grpc.ChannelCredentials | None, metadata: Metadata,
                        filename: str) -> list[tuple[grpc.StatusCode | None, str]]:
    """One Log, one LogBatch and one LogStream straight to a streamer: their codes and details."""
    found: list[tuple[grpc.StatusCode | None, str]] = []
    async with channel(target, creds) as ch:
        stub = pb_grpc.LogStreamerStub(ch)
        batch = pb.LogBatchRequest(chunks=[pb.LogChunk(filename=filename, data=b"direct\n")])

        async def stream() -> None:
            call = stub.LogStream(metadata=metadata, timeout=10)
            await call.write(batch)
            await call.read()

        for call in (stub.Log(pb.LogRequest(filename=filename, line="direct"), metadata=metadata, timeout=10),
                     stub.LogBatch(batch, metadata=metadata, timeout=10), stream()):
            try:
                await call
                found.append((None, ""))
            except grpc.aio.AioRpcError as exc:
                found.append((exc.code(), exc.details() or ""))
    return found


async def via_mediator(target: str, creds: grpc.ChannelCredentials | None, filename: str, line: str) -> None:
    async with channel(target, creds) as ch:
        await pb_grpc.LogStreamerStub(ch).Log(pb.LogRequest(filename=filename, line=line), timeout=20)


def test_a_direct_write_to_a_clustered_streamer_is_refused_naming_the_mediator(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_mediator() as mediator, start_streamer("s0", root, mediator.address) as streamer:
        mediator.wait_for(r"is live \(1 live\)")
        asyncio.run(via_mediator(mediator.address, None, "f", "forwarded"))
        for _ in range(10):
            for metadata in ((), call_metadata("someone-else")):
                for code, details in asyncio.run(direct_writes(streamer.address, None, metadata, "f")):
                    assert code == grpc.StatusCode.FAILED_PRECONDITION, details
                    assert mediator.address in details
        assert (root / "f.log").read_text() == "forwarded\n"
        # Said at the default level, once per cause, not once per request.
        said = [line for line in streamer.lines if "FAILED_PRECONDITION" in line]
        assert len(said) == 1, said
        asyncio.run(via_mediator(mediator.address, None, "f", "still forwarded"))
        assert (root / "f.log").read_text() == "forwarded\nstill forwarded\n"


async def forge(target: str, creds: grpc.ChannelCredentials | None, metadata: Metadata) -> list[grpc.StatusCode | None]:
    """A forged hour-long lease from a made-up mediator (two numbered pings), then a Release."""
    async with channel(target, creds) as ch:
        pinger = pb_grpc.PingerStub(ch)
        codes = []
        for seq, acked in ((1, 0), (2, 1)):
            ping = pb.PingRequest(a=2, b=3, lease_ms=3_600_000, mediator_id="forged", interval_ms=1000,
                                  seq=seq, acked_seq=acked)
            codes.append(await code_of(pinger.Ping(ping, metadata=metadata, timeout=5)))
        release = pb.ReleaseRequest(keys=[pb.FileKey(filename="f")], mediator_id="forged")
        codes.append(await code_of(pb_grpc.StreamerControlStub(ch).Release(release, metadata=metadata, timeout=5)))
        return codes


async def register(target: str, creds: grpc.ChannelCredentials | None, metadata: Metadata,
                   streamer_id: str) -> grpc.StatusCode | None:
    async with channel(target, creds) as ch:
        request = pb.RegisterRequest(id=streamer_id, addr="127.0.0.1:1")
        return await code_of(pb_grpc.RegisterStub(ch).Register(request, metadata=metadata, timeout=5))


def test_with_a_token_forged_pings_releases_and_registrations_change_nothing(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    token_file = tmp_path / "cluster.token"
    token_file.write_text("s3cret-token\n")
    token = ["-token-file", str(token_file)]
    with start_mediator(*token) as mediator, start_streamer("s0", root, mediator.address, *token) as streamer:
        mediator.wait_for(r"is live \(1 live\)")
        asyncio.run(via_mediator(mediator.address, None, "f", "one"))
        for metadata in ((), call_metadata("forged", "wrong-token")):
            assert asyncio.run(forge(streamer.address, None, metadata)) == [grpc.StatusCode.PERMISSION_DENIED] * 3
            assert asyncio.run(register(mediator.address, None, metadata, "s0")) == grpc.StatusCode.PERMISSION_DENIED
        # A plain compat ping is still answered.
        async def compat() -> int:
            async with channel(streamer.address, None) as ch:
                return (await pb_grpc.PingerStub(ch).Ping(pb.PingRequest(a=6, b=7), timeout=5)).res
        assert asyncio.run(compat()) == 42
        codes = asyncio.run(direct_writes(streamer.address, None, call_metadata("forged"), "f"))
        assert [code for code, _ in codes] == [grpc.StatusCode.FAILED_PRECONDITION] * 3
        assert not [line for line in streamer.lines if "mediator changed" in line]
        status = fetch_status(mediator.address)
        assert [(s["id"], s["addr"], s["alive"]) for s in status["streamers"]] == [("s0", streamer.address, True)]
        asyncio.run(via_mediator(mediator.address, None, "f", "two"))  # the real owner still holds f
        assert (root / "f.log").read_text() == "one\ntwo\n"
        # The real mediator gone: the streamer's lease lapses; the forged one never started.
        mediator_id = status["mediator_id"]
        assert mediator.stop() == 0
        time.sleep(2.0)
        for metadata in (call_metadata("forged"), call_metadata(mediator_id)):
            codes = asyncio.run(direct_writes(streamer.address, None, metadata, "f"))
            assert [code for code, _ in codes] == [grpc.StatusCode.FAILED_PRECONDITION] * 3
        assert (root / "f.log").read_text() == "one\ntwo\n"


def test_mutual_tls_client_certificates_cannot_steer(tmp_path: Path, tls_files: TlsFiles) -> None:
    root = tmp_path / "logs"
    node_tls = ["-ca", str(tls_files.ca), "-crt", str(tls_files.node_crt), "-pk", str(tls_files.node_key)]
    client = channel_credentials(tls_files.ca, tls_files.client_crt, tls_files.client_key)
    with start_mediator(*node_tls) as mediator, start_streamer("s0", root, mediator.address, *node_tls) as streamer:
        mediator.wait_for(r"is live \(1 live\)")
        asyncio.run(via_mediator(mediator.address, client, "f", "one"))
        assert asyncio.run(register(mediator.address, client, (), "s0")) == grpc.StatusCode.PERMISSION_DENIED
        status = fetch_status(mediator.address, client)
        assert [(s["id"], s["addr"], s["alive"]) for s in status["streamers"]] == [("s0", streamer.address, True)]
        assert asyncio.run(forge(streamer.address, client, ())) == [grpc.StatusCode.PERMISSION_DENIED] * 3
        # Even claiming the real mediator's incarnation, a client certificate cannot forward.
        codes = asyncio.run(direct_writes(streamer.address, client, call_metadata(status["mediator_id"]), "f"))
        assert [code for code, _ in codes] == [grpc.StatusCode.FAILED_PRECONDITION] * 3
        asyncio.run(via_mediator(mediator.address, client, "f", "two"))
        assert (root / "f.log").read_text() == "one\ntwo\n"


async def write_through_deletion(target: str, root: Path) -> tuple[list[str], int]:
    """Batches of numbered lines to four files while the root is deleted (again, until one pass
    finds nothing left to fail on); the lines acknowledged for requests sent after that."""
    after: list[str] = []
    deleted_at: list[float] = []

    async def delete() -> None:
        await asyncio.sleep(0.3)
        while True:
            failures: list[object] = []
            await asyncio.to_thread(shutil.rmtree, root, onerror=lambda *args: failures.append(args))
            if not failures:
                break
        deleted_at.append(time.monotonic())

    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.LogStreamerStub(ch)
        deleter = asyncio.create_task(delete())
        n = 0
        errors = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not deleted_at or time.monotonic() < deleted_at[0] + 1.0):
            n += 1
            sent = time.monotonic()
            lines = [f"line {n} {i}" for i in range(20)]
            request = pb.LogBatchRequest(chunks=[pb.LogChunk(path=f"d{k % 2}", filename=f"f{k}",
                                                             data="".join(f"{x}\n" for x in lines).encode())
                                                 for k in range(4)])
            try:
                await stub.LogBatch(request, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if deleted_at and sent > deleted_at[0]:
                after.extend(f"d{k % 2}/f{k}:{x}" for k in range(4) for x in lines)
        await deleter
    assert deleted_at, "the root was never deleted within 30s"
    return after, errors


def test_deleting_the_root_while_writing_loses_no_acknowledged_line(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root)]) as streamer:
        after, _ = asyncio.run(write_through_deletion(streamer.address, root))
        assert after, "no write was acknowledged after the root was deleted"
        on_disk = {f"{file.parent.name}/{file.stem}:{line}"
                   for file in root.rglob("*.log") for line in file.read_text().splitlines()}
        missing = [line for line in after if line not in on_disk]
        assert not missing, f"{len(missing)} of {len(after)} acknowledged lines are not on disk: {missing[:3]}"
        streamer.wait_for("was deleted or replaced")
        assert streamer.stop() == 0


class GoMediator:
    """The Go original's mediator, emulated from its protocol: serves only api.Register/Register; pings a
    registered streamer with plain Ping(a, b) and forwards with unary Log (no metadata, no lease)."""

    def __init__(self) -> None:
        self.registered: asyncio.Queue[str] = asyncio.Queue()
        self.server = grpc.aio.server()

        async def register(request: pb.RegisterRequest, context: grpc.aio.ServicerContext) -> pb.RegisterResponse:
            await self.registered.put(request.addr)
            return pb.RegisterResponse(res="Success")

        handler = grpc.unary_unary_rpc_method_handler(register, pb.RegisterRequest.FromString,
                                                      pb.RegisterResponse.SerializeToString)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("api.Register",
                                                                                   {"Register": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")


def test_our_streamer_writes_under_the_originals_mediator(tmp_path: Path) -> None:
    root = tmp_path / "logs"

    async def scenario() -> Node:
        go = GoMediator()
        await go.server.start()
        streamer = start_streamer("s0", root, f"127.0.0.1:{go.port}")
        try:
            addr = await asyncio.wait_for(go.registered.get(), 20)
            await asyncio.to_thread(streamer.wait_for, "legacy mode")
            async with grpc.aio.insecure_channel(addr) as ch:
                pinger, log = pb_grpc.PingerStub(ch), pb_grpc.LogStreamerStub(ch)
                for n in range(100):
                    if n % 25 == 0:
                        assert (await pinger.Ping(pb.PingRequest(a=n, b=3, streamerId="s0"), timeout=5)).res == 3 * n
                    reply = await log.Log(pb.LogRequest(path="go", filename="app", line=f"line {n}"), timeout=5)
                    assert reply.res == "Success"
                stats = await pb_grpc.StreamerControlStub(ch).Stats(pb.StatsRequest(), timeout=5)
                assert stats.mode == "legacy"
        except BaseException:
            streamer.__exit__()
            raise
        finally:
            await go.server.stop(None)
        return streamer

    streamer = asyncio.run(scenario())
    with streamer:
        assert (root / "go" / "app.log").read_text().splitlines() == [f"line {n}" for n in range(100)]
        assert len([line for line in streamer.lines if "legacy mode" in line]) == 1


def test_a_root_that_cannot_be_re_created_is_refused_and_not_serving_until_it_is_back(tmp_path: Path) -> None:
    parent = tmp_path / "disk"
    root = parent / "logs"
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root)]) as streamer:

        async def write(line: str) -> tuple[grpc.StatusCode | None, str]:
            async with grpc.aio.insecure_channel(streamer.address) as ch:
                try:
                    await pb_grpc.LogStreamerStub(ch).Log(pb.LogRequest(filename="f", line=line), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    return exc.code(), exc.details() or ""
            return None, ""

        async def health(service: str = "api.LogStreamer") -> int:
            async with grpc.aio.insecure_channel(streamer.address) as ch:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service),
                                                                   timeout=5)
                return int(reply.status)

        async def wait_health(status: int) -> None:
            deadline = time.monotonic() + 10
            while await health() != status:
                assert time.monotonic() < deadline, f"health never became {status}"
                await asyncio.sleep(0.1)

        assert asyncio.run(write("one")) == (None, "")
        shutil.rmtree(parent)
        parent.write_bytes(b"")  # a file where the root's parent was: the root cannot be re-created
        code, details = asyncio.run(write("two"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and str(root) in details
        asyncio.run(wait_health(health_pb2.HealthCheckResponse.NOT_SERVING))
        # Not ready, but live: restarting the process would not bring the root back.
        assert asyncio.run(health("")) == health_pb2.HealthCheckResponse.SERVING
        parent.unlink()
        asyncio.run(wait_health(health_pb2.HealthCheckResponse.SERVING))
        assert asyncio.run(write("three")) == (None, "")
        assert (root / "f.log").read_text() == "three\n"
        assert streamer.stop() == 0
