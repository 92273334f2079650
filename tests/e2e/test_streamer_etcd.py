"""A streamer in etcd mode, as real processes against a real etcd on loopback, each with its own root
(so that a second writer of a key would be seen on disk): it writes the keys it claims, refuses a
key another streamer owns with FAILED_PRECONDITION naming the owner in the trailing metadata,
refuses callers outside the cluster, is NOT_SERVING while its lease cannot be proven, and a
streamer paused past its lease writes nothing once it runs again, while no acknowledged line is lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from etcd_server import EtcdServer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Node, start_node

from logstream.node.health import WRITE_SERVICE
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.coord.etcd import Etcd
from logstream.coord.gate import OWNER_HEADER, owner_named
from logstream.coord.protocol import owners_prefix, parse_owner_key
from logstream.node.auth import call_metadata
from logstream.node.token_file import ensure_token, read_token

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.e2e

CLUSTER = "t"
TTL_S = 2


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path / "etcd").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.token"
    ensure_token(path)
    return path


def start_streamer(name: str, root: Path, etcd: EtcdServer, token_file: Path) -> Node:
    return start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", name,
                       "-etcd", ",".join(etcd.endpoints), "-cluster", CLUSTER, "-etcd-ttl", f"{TTL_S}s",
                       "-token-file", str(token_file)])


class Streamers:
    """Streamers s1.. with roots root/s1.., stopped at the end."""

    def __init__(self, tmp_path: Path, etcd: EtcdServer, token_file: Path) -> None:
        self.tmp_path, self.etcd, self.token_file = tmp_path, etcd, token_file
        self.nodes: dict[str, Node] = {}
        self.metadata = call_metadata(token=read_token(token_file))

    def start(self, *names: str) -> list[Node]:
        for name in names:
            self.nodes[name] = start_streamer(name, self.root(name), self.etcd, self.token_file)
        return [self.nodes[name] for name in names]

    def root(self, name: str) -> Path:
        return self.tmp_path / f"root-{name}"

    def stop(self) -> None:
        for node in self.nodes.values():
            node.proc.send_signal(signal.SIGCONT)
            node.stop()


@pytest.fixture
def streamers(tmp_path: Path, etcd_server: EtcdServer, token_file: Path) -> Iterator[Streamers]:
    group = Streamers(tmp_path, etcd_server, token_file)
    try:
        yield group
    finally:
        group.stop()


async def serving(address: str) -> bool:
    """Ready: grpc health of the write service (the process itself stays live throughout)."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=WRITE_SERVICE), timeout=2)
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def wait_serving(address: str, want: bool = True, timeout_s: float = 10.0) -> float:
    deadline = time.monotonic() + timeout_s
    while await serving(address) != want:
        assert time.monotonic() < deadline, f"{address} not {'SERVING' if want else 'NOT_SERVING'} in {timeout_s}s"
        await asyncio.sleep(0.05)
    return time.monotonic()


def batch(filename: str, *lines: str) -> pb.LogBatchRequest:
    return pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename=filename,
                                                  data="".join(f"{line}\n" for line in lines).encode())])


def lines_in(root: Path, filename: str) -> list[str]:
    found: list[str] = []
    for file in files_of(root, filename):
        found += file.read_text().splitlines()
    return found


def files_of(root: Path, filename: str) -> list[Path]:
    """The key's files: rotated ones (`NAME_<time>...log`, in rotation order), then the current one."""
    folder = root / "app"
    if not folder.is_dir():
        return []
    return [*sorted(folder.glob(f"{filename}_*.log")), *folder.glob(f"{filename}.log")]


async def owners_in_etcd(etcd: EtcdServer) -> dict[tuple[str, str], str]:
    client = Etcd(etcd.endpoints)
    try:
        snapshot = await client.get_prefix(owners_prefix(CLUSTER))
    finally:
        await client.close()
    return {parse_owner_key(CLUSTER, key): record.value for key, record in snapshot.records.items()}


@pytest.mark.asyncio
async def test_a_streamer_writes_keys_it_claims_and_refuses_anothers_naming_the_owner(streamers: Streamers) -> None:
    s1, s2 = streamers.start("s1", "s2")
    await wait_serving(s1.address)
    await wait_serving(s2.address)
    md = streamers.metadata
    async with grpc.aio.insecure_channel(s1.address) as c1, grpc.aio.insecure_channel(s2.address) as c2:
        one, two = pb_grpc.LogStreamerStub(c1), pb_grpc.LogStreamerStub(c2)
        await one.Log(pb.LogRequest(path="app", filename="a", line="first"), metadata=md, timeout=10)
        assert (await one.LogBatch(batch("a", "second", "third"), metadata=md, timeout=10)).lines == 2
        await two.LogBatch(batch("b", "b-line"), metadata=md, timeout=10)
        # Each of the three write calls, for a key the other streamer owns: refused, owner named.
        refusals: list[grpc.aio.AioRpcError] = []
        for call in (two.Log(pb.LogRequest(path="app", filename="a", line="stolen"), metadata=md, timeout=10),
                     two.LogBatch(batch("a", "stolen"), metadata=md, timeout=10),
                     one.LogBatch(batch("b", "stolen"), metadata=md, timeout=10)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            refusals.append(refused.value)
        stream = two.LogStream(metadata=md, timeout=10)
        await stream.write(batch("a", "stolen"))
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            await stream.read()
        refusals.append(streamed.value)
        assert [e.code() for e in refusals] == [grpc.StatusCode.FAILED_PRECONDITION] * 4
        assert [owner_named(e) for e in refusals] == ["s1", "s1", "s2", "s1"]
        # A caller outside the cluster (no token) may not write at all, even a key the streamer owns.
        with pytest.raises(grpc.aio.AioRpcError) as outsider:
            await one.Log(pb.LogRequest(path="app", filename="a", line="outsider"), timeout=10)
        assert outsider.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (OWNER_HEADER, "s1") not in tuple(outsider.value.trailing_metadata() or ())
    assert lines_in(streamers.root("s1"), "a") == ["first", "second", "third"]
    assert lines_in(streamers.root("s2"), "a") == []
    assert lines_in(streamers.root("s2"), "b") == ["b-line"]
    assert lines_in(streamers.root("s1"), "b") == []
    assert await owners_in_etcd(streamers.etcd) == {("app", "a"): "s1", ("app", "b"): "s2"}


@pytest.mark.asyncio
async def test_two_streamers_racing_for_keys_write_each_key_in_exactly_one_root(streamers: Streamers) -> None:
    s1, s2 = streamers.start("s1", "s2")
    await wait_serving(s1.address)
    await wait_serving(s2.address)
    md = streamers.metadata
    names = [f"k{n}" for n in range(40)]
    async with grpc.aio.insecure_channel(s1.address) as c1, grpc.aio.insecure_channel(s2.address) as c2:
        stubs = {"s1": pb_grpc.LogStreamerStub(c1), "s2": pb_grpc.LogStreamerStub(c2)}

        async def send(streamer: str, name: str, round_: int) -> tuple[str, str, str | None]:
            try:
                await stubs[streamer].LogBatch(batch(name, f"{name} from {streamer} round {round_}"),
                                               metadata=md, timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc
                return streamer, name, owner_named(exc)
            return streamer, name, None

        acked: dict[str, list[str]] = {name: [] for name in names}
        owners: dict[str, str] = {}
        for round_ in range(3):  # the first round races for every key at once; later ones confirm
            # Who asks first alternates by key, so that both streamers win some keys.
            results = await asyncio.gather(*(send(s, n, round_) for i, n in enumerate(names)
                                             for s in (("s1", "s2") if i % 2 else ("s2", "s1"))))
            for streamer, name, refused_by in results:
                if refused_by is None:
                    acked[name].append(f"{name} from {streamer} round {round_}")
                    assert owners.setdefault(name, streamer) == streamer, f"{name}: two streamers wrote it"
                else:
                    assert refused_by != streamer
                    assert owners.setdefault(name, refused_by) == refused_by
    in_etcd = await owners_in_etcd(streamers.etcd)
    assert {name: in_etcd[("app", name)] for name in names} == owners
    for name in names:
        owner, other = owners[name], ("s2" if owners[name] == "s1" else "s1")
        assert lines_in(streamers.root(owner), name) == acked[name] and len(acked[name]) == 3
        assert lines_in(streamers.root(other), name) == []


@pytest.mark.asyncio
async def test_a_streamer_paused_past_its_lease_writes_nothing_after_and_no_acknowledged_line_is_lost(
        streamers: Streamers) -> None:
    s1, s2 = streamers.start("s1", "s2")
    await wait_serving(s1.address)
    await wait_serving(s2.address)
    md = streamers.metadata
    acked: list[str] = []
    async with grpc.aio.insecure_channel(s1.address) as c1, grpc.aio.insecure_channel(s2.address) as c2:
        one, two = pb_grpc.LogStreamerStub(c1), pb_grpc.LogStreamerStub(c2)
        for n in range(5):
            await one.LogBatch(batch("k", f"before {n}"), metadata=md, timeout=10)
            acked.append(f"before {n}")
        s1.proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        # Sent while s1 is stopped: it sits in s1's socket and is read only after SIGCONT, when
        # s1's lease has surely expired. Writing it then would make s1 a second writer of k.
        queued = asyncio.ensure_future(one.LogBatch(batch("k", "queued while paused"), metadata=md, timeout=60))
        # s2 takes k over once etcd has expired s1's lease (about a TTL after s1's last keep-alive).
        while True:
            try:
                await two.LogBatch(batch("k", "after 0"), metadata=md, timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and owner_named(exc) == "s1", exc
                assert time.monotonic() - paused < TTL_S + 5, "s1's key was never freed"
                await asyncio.sleep(0.1)
        acked.append("after 0")
        moved = time.monotonic() - paused
        s1_lines = lines_in(streamers.root("s1"), "k")
        s1_size = sum(f.stat().st_size for f in files_of(streamers.root("s1"), "k"))
        # etcd stopped too while s1 resumes: s1 cannot learn from etcd that its lease is gone, so
        # only its own clock (the proof counted from its last keep-alive's send) can stop it.
        streamers.etcd.pause()
        try:
            s1.proc.send_signal(signal.SIGCONT)
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await asyncio.wait_for(queued, 10)
        finally:
            streamers.etcd.resume()
        assert late.value.code() == grpc.StatusCode.UNAVAILABLE, late.value
        n = 1
        while n < 4:  # s2's own lease may have lapsed while etcd was stopped: UNAVAILABLE, retried
            try:
                await two.LogBatch(batch("k", f"after {n}"), metadata=md, timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - paused < 30, exc
                await asyncio.sleep(0.1)
                continue
            acked.append(f"after {n}")
            n += 1
        # s1, running again with a new lease, is told who owns k now.
        deadline = time.monotonic() + 10
        while True:
            try:
                await one.LogBatch(batch("k", "from s1 again"), metadata=md, timeout=10)
                raise AssertionError("s1 wrote k, which s2 owns")
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    assert owner_named(exc) == "s2"
                    break
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            assert time.monotonic() < deadline, "s1 never came back with a new lease"
            await asyncio.sleep(0.1)
    assert lines_in(streamers.root("s1"), "k") == s1_lines
    assert sum(f.stat().st_size for f in files_of(streamers.root("s1"), "k")) == s1_size
    assert s1_lines == [f"before {n}" for n in range(5)]
    written = lines_in(streamers.root("s1"), "k") + lines_in(streamers.root("s2"), "k")
    assert sorted(written) == sorted(acked)  # every acknowledged line, once; nothing else
    assert moved < TTL_S + 3
    print(f"key moved {moved:.2f}s after SIGSTOP (TTL {TTL_S}s)")


@pytest.mark.asyncio
async def test_a_streamer_is_not_serving_while_etcd_cannot_renew_its_lease(streamers: Streamers) -> None:
    (s1,) = streamers.start("s1")
    await wait_serving(s1.address)
    md = streamers.metadata
    async with grpc.aio.insecure_channel(s1.address) as c1:
        one = pb_grpc.LogStreamerStub(c1)
        await one.LogBatch(batch("k", "before"), metadata=md, timeout=10)
        streamers.etcd.pause()
        try:
            paused = time.monotonic()
            down = await wait_serving(s1.address, want=False, timeout_s=TTL_S + 3)
            assert down - paused <= TTL_S + 0.5
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await one.LogBatch(batch("k", "while etcd is stopped"), metadata=md, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            streamers.etcd.resume()
        await wait_serving(s1.address, timeout_s=10)
        deadline = time.monotonic() + 10
        while True:  # a new lease may have to claim k again
            try:
                await one.LogBatch(batch("k", "after"), metadata=md, timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    assert lines_in(streamers.root("s1"), "k") == ["before", "after"]


@pytest.mark.asyncio
async def test_the_streamer_reaches_etcd_with_its_own_tls_settings(tmp_path: Path, tls_files: TlsFiles) -> None:
    from etcd_server import EtcdTls

    from logstream.node.tls import channel_credentials

    # etcd requires client certificates signed by the cluster's CA: the streamer's -crt/-pk/-ca serve.
    server = EtcdServer(tmp_path / "etcd-tls", tls=EtcdTls(tls_files.node_crt, tls_files.node_key,
                                                           client_ca=tls_files.ca)).start()
    node = start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "root"), "-id", "s1",
                       "-etcd", server.endpoint, "-cluster", CLUSTER, "-etcd-ttl", f"{TTL_S}s",
                       "-ca", str(tls_files.ca), "-crt", str(tls_files.node_crt), "-pk", str(tls_files.node_key)])
    try:
        node_creds = channel_credentials(tls_files.ca, tls_files.node_crt, tls_files.node_key)
        async with grpc.aio.secure_channel(node.address, node_creds) as channel:
            deadline = time.monotonic() + 10  # ready (api.LogStreamer): its etcd lease is proven
            while (await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=WRITE_SERVICE), timeout=2)).status \
                    != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, node.stderr  # readiness: the etcd lease is held
                await asyncio.sleep(0.05)
            # A node certificate is a node of the cluster (mutual TLS): its write is admitted.
            await pb_grpc.LogStreamerStub(channel).LogBatch(batch("k", "over TLS"), timeout=10)
        client = Etcd(server.endpoints, node_creds)
        try:
            owners = (await client.get_prefix(owners_prefix(CLUSTER))).records
        finally:
            await client.close()
        assert [(parse_owner_key(CLUSTER, key), record.value) for key, record in owners.items()] == [
            (("app", "k"), "s1")]
        assert lines_in(tmp_path / "root", "k") == ["over TLS"]
    finally:
        node.stop()
        server.stop()


@pytest.mark.asyncio
async def test_a_restarted_streamer_waits_for_its_previous_runs_lease_before_writing_its_keys(
        streamers: Streamers) -> None:
    (s1,) = streamers.start("s1")
    await wait_serving(s1.address)
    md = streamers.metadata
    async with grpc.aio.insecure_channel(s1.address) as c1:
        await pb_grpc.LogStreamerStub(c1).LogBatch(batch("k", "first run"), metadata=md, timeout=10)
    s1.proc.send_signal(signal.SIGKILL)  # no revoke: its lease (and record of k) lives on in etcd
    s1.stop()
    killed = time.monotonic()
    (again,) = streamers.start("s1")  # the same id and root, a new process and lease
    codes: list[grpc.StatusCode] = []
    first_try = time.monotonic()
    async with grpc.aio.insecure_channel(again.address) as channel:
        stub = pb_grpc.LogStreamerStub(channel)
        while True:
            try:
                await stub.LogBatch(batch("k", "second run"), metadata=md, timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                # Its own id on another lease: UNAVAILABLE (retry later), never a refusal naming itself.
                assert exc.code() == grpc.StatusCode.UNAVAILABLE and owner_named(exc) is None, exc
                codes.append(exc.code())
                assert time.monotonic() - killed < TTL_S + 5, "the previous run's record never expired"
                await asyncio.sleep(0.1)
    # The old lease was last renewed at most TTL/3 before the kill, so its record surely lived
    # until 2/3 TTL after it: a write tried before then must have been refused.
    if first_try < killed + TTL_S * 2 / 3 - 0.1:
        assert codes, "written while the previous run's record surely still existed"
    assert lines_in(streamers.root("s1"), "k") == ["first run", "second run"]


@pytest.mark.asyncio
async def test_release_moves_a_key_at_once_without_waiting_for_a_lease(streamers: Streamers) -> None:
    s1, s2 = streamers.start("s1", "s2")
    await wait_serving(s1.address)
    await wait_serving(s2.address)
    md = streamers.metadata
    async with grpc.aio.insecure_channel(s1.address) as c1, grpc.aio.insecure_channel(s2.address) as c2:
        one, two = pb_grpc.LogStreamerStub(c1), pb_grpc.LogStreamerStub(c2)
        await one.LogBatch(batch("k", "on s1"), metadata=md, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await two.LogBatch(batch("k", "too early"), metadata=md, timeout=10)
        assert owner_named(refused.value) == "s1"
        control = pb_grpc.StreamerControlStub(c1)
        with pytest.raises(grpc.aio.AioRpcError) as outsider:  # only a node of the cluster may move keys
            await control.Release(pb.ReleaseRequest(keys=[pb.FileKey(path="app", filename="k")]), timeout=10)
        assert outsider.value.code() == grpc.StatusCode.PERMISSION_DENIED
        released = time.monotonic()
        reply = await control.Release(pb.ReleaseRequest(keys=[pb.FileKey(path="app", filename="k")]),
                                      metadata=md, timeout=10)
        assert reply.released == 1  # its file was open, and is closed now
        await two.LogBatch(batch("k", "on s2"), metadata=md, timeout=10)
        assert time.monotonic() - released < TTL_S / 2  # the guarded delete freed it: no lease expiry awaited
        with pytest.raises(grpc.aio.AioRpcError) as back:
            await one.LogBatch(batch("k", "back on s1"), metadata=md, timeout=10)
        assert back.value.code() == grpc.StatusCode.FAILED_PRECONDITION and owner_named(back.value) == "s2"
    assert lines_in(streamers.root("s1"), "k") == ["on s1"]
    assert lines_in(streamers.root("s2"), "k") == ["on s2"]
    assert await owners_in_etcd(streamers.etcd) == {("app", "k"): "s2"}
