"""etcd mode's adapter (logstream/coord) against a real etcd process on loopback: claims race,
a dead streamer's lease frees its keys, guarded deletes, validity lapses when etcd stops answering,
and a mediator's view follows etcd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from etcd_server import EtcdServer, EtcdTls
from logstream.coord.etcd import Etcd, EtcdUnavailable
from logstream.coord.ownership import ClusterView, NoLease, StreamerSession
from logstream.coord.protocol import NotOwner, Owned, delete_if_mine, owner_key
from logstream.node.tls import channel_credentials

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.e2e

CLUSTER = "t"
TTL_S = 2  # etcd's smallest with the test server's 500 ms election timeout is 1 s


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path / "etcd").start()
    try:
        yield server
    finally:
        server.stop()


class Streamer:
    """A StreamerSession running as a streamer would run it, with the keys it was told to close."""

    def __init__(self, endpoints: list[str], name: str, ttl_s: int = TTL_S,
                 creds: grpc.ChannelCredentials | None = None) -> None:
        self.etcd = Etcd(endpoints, creds)
        self.lapses: list[tuple[float, list[str]]] = []
        self.session = StreamerSession(self.etcd, CLUSTER, name, f"127.0.0.1:{9000 + len(name)}",
                                       on_lapse=lambda keys: self.lapses.append((time.monotonic(), keys)),
                                       ttl_s=ttl_s)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.session.run(), name=f"session-{self.session.streamer_id}")
        await wait_until(lambda: self.session.holdings is not None, 10.0, "a lease")

    async def crash(self) -> None:
        """Stop keeping the lease alive without revoking it (a killed process)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})
            self.task = None

    async def close(self) -> None:
        await self.crash()
        await self.session.close()
        await self.etcd.close()


async def wait_until(condition: object, timeout_s: float, what: str) -> float:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s}s")
        await asyncio.sleep(0.02)
    return time.monotonic()


@asynccontextmanager
async def streamers(endpoint: str, *names: str) -> AsyncIterator[list[Streamer]]:
    started = [Streamer([endpoint], name) for name in names]
    try:
        for streamer in started:
            await streamer.start()
        yield started
    finally:
        for streamer in started:
            await streamer.close()


@pytest.mark.asyncio
async def test_two_streamers_racing_for_keys_each_key_goes_to_one_and_the_other_is_told_who(
        etcd_server: EtcdServer) -> None:
    async with streamers(etcd_server.endpoint, "s1", "s2") as (a, b):
        for n in range(20):
            outcomes = await asyncio.gather(a.session.acquire("race", f"f{n}"), b.session.acquire("race", f"f{n}"))
            winners = [s for s, o in zip((a, b), outcomes) if isinstance(o, Owned)]
            assert len(winners) == 1, outcomes
            winner = winners[0].session
            loser_outcome = next(o for o in outcomes if not isinstance(o, Owned))
            assert loser_outcome == NotOwner(winner.streamer_id)
            assert winner.may_write("race", f"f{n}")
            assert not (a.session.may_write("race", f"f{n}") and b.session.may_write("race", f"f{n}"))
            record = (await a.etcd.get_prefix(owner_key(CLUSTER, "race", f"f{n}"))).records
            held = winner.holdings
            assert held is not None
            assert [(r.value, r.lease) for r in record.values()] == [(winner.streamer_id, held.lease)]


@pytest.mark.asyncio
async def test_a_dead_streamers_key_is_free_once_its_lease_expires_and_not_before_it_stopped_writing(
        etcd_server: EtcdServer) -> None:
    async with streamers(etcd_server.endpoint, "s1", "s2") as (a, b):
        assert isinstance(await a.session.acquire("app", "f"), Owned)
        assert a.session.holdings is not None
        await a.crash()
        crashed = time.monotonic()
        a_writes_until = a.session.holdings.clock.until  # A's own proof ends here, on this clock
        while True:
            outcome = await b.session.acquire("app", "f")
            if isinstance(outcome, Owned):
                break
            assert outcome == NotOwner("s1")
            assert time.monotonic() - crashed < TTL_S + 5, "the dead streamer's key was never freed"
            await asyncio.sleep(0.05)
        b_owns = time.monotonic()
        # etcd freed the key only after A could no longer prove its lease: never two writers.
        assert a_writes_until <= b_owns
        assert not a.session.may_write("app", "f") and b.session.may_write("app", "f")
        assert b_owns - crashed <= TTL_S + 2.0


@pytest.mark.asyncio
async def test_a_release_deletes_only_the_releasers_own_record(etcd_server: EtcdServer) -> None:
    async with streamers(etcd_server.endpoint, "s1", "s2") as (a, b):
        first = await a.session.acquire("app", "f")
        assert isinstance(first, Owned)
        assert await a.session.release("app", "f")
        assert not a.session.may_write("app", "f")
        assert not await a.session.release("app", "f")  # not held any more
        assert isinstance(await b.session.acquire("app", "f"), Owned)
        # A's delete of its old record, delivered late: guarded, it leaves B's record alone.
        assert a.session.holdings is not None
        late = await a.etcd.txn(delete_if_mine(owner_key(CLUSTER, "app", "f"), a.session.holdings.lease,
                                               first.create_revision))
        assert not late.succeeded
        assert late.found is not None and late.found.value == "s2"
        assert await a.session.acquire("app", "f") == NotOwner("s2")


@pytest.mark.asyncio
async def test_a_streamer_stops_writing_when_etcd_stops_answering_and_resumes_after(
        etcd_server: EtcdServer) -> None:
    async with streamers(etcd_server.endpoint, "s1") as (a,):
        assert isinstance(await a.session.acquire("app", "f"), Owned)
        key = owner_key(CLUSTER, "app", "f")
        etcd_server.pause()
        try:
            paused = time.monotonic()
            lapsed = await wait_until(lambda: a.lapses, TTL_S + 3.0, "lapse")
            holdings = a.session.holdings
            assert holdings is not None
            # It stopped at the end of its proof (the timer's latency aside), within a TTL.
            assert holdings.clock.until <= lapsed <= holdings.clock.until + 0.5
            assert lapsed - paused <= TTL_S
            assert a.lapses[0][1] == [key]
            assert not a.session.may_write("app", "f")
            with pytest.raises(NoLease):
                await a.session.acquire("app", "f")
        finally:
            etcd_server.resume()
        # Back: either the same lease was kept alive (its record never went) or it had expired and a
        # new lease is granted; either way the key can be held and written again.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                if isinstance(await a.session.acquire("app", "f"), Owned) and a.session.may_write("app", "f"):
                    break
            except NoLease:
                pass
            assert time.monotonic() < deadline, "never writable again after etcd came back"
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_mediators_view_follows_members_and_owners(etcd_server: EtcdServer) -> None:
    async with streamers(etcd_server.endpoint, "s1") as (a,):
        etcd = Etcd([etcd_server.endpoint])
        view = ClusterView(etcd, CLUSTER)
        task = asyncio.create_task(view.run(), name="view")
        try:
            await wait_until(lambda: "s1" in view.members, 5.0, "member in the view")
            await a.session.acquire("app/x", "f")
            await wait_until(lambda: view.owners.get(("app/x", "f")) == "s1", 5.0, "owner in the view")
            await a.session.release("app/x", "f")
            await wait_until(lambda: ("app/x", "f") not in view.owners, 5.0, "release in the view")
            await a.crash()
            await a.session.close()  # revokes the lease: the member record goes with it
            await wait_until(lambda: "s1" not in view.members, 5.0, "member gone from the view")
        finally:
            task.cancel()
            await asyncio.wait({task})
            await etcd.close()


@pytest.mark.asyncio
async def test_losing_one_of_three_etcd_members_does_not_interrupt_a_streamers_writes(tmp_path: Path) -> None:
    cluster = EtcdServer(tmp_path / "etcd", size=3).start()
    leader = cluster.leader()
    # The leader first: the client talks to it, so its loss is both a lost connection and an election.
    endpoints = [leader.endpoint] + [e for e in cluster.endpoints if e != leader.endpoint]
    a = Streamer(endpoints, "s1", ttl_s=3)
    try:
        await a.start()
        assert isinstance(await a.session.acquire("app", "f"), Owned)
        leader.kill()
        killed = time.monotonic()
        unwritable = 0
        while time.monotonic() - killed < 2 * 3:  # two TTLs
            unwritable += not a.session.may_write("app", "f")
            await asyncio.sleep(0.02)
        assert unwritable == 0 and a.lapses == []
        assert isinstance(await a.session.acquire("app", "g"), Owned)  # claims still go through
    finally:
        await a.close()
        cluster.stop()


@pytest.mark.asyncio
async def test_the_etcd_hop_uses_the_clusters_tls(tmp_path: Path, tls_files: TlsFiles) -> None:
    server = EtcdServer(tmp_path / "etcd", tls=EtcdTls(tls_files.node_crt, tls_files.node_key,
                                                       client_ca=tls_files.ca)).start()
    creds = channel_credentials(tls_files.ca, tls_files.client_crt, tls_files.client_key)
    a = Streamer(server.endpoints, "s1", creds=creds)
    try:
        await a.start()
        assert isinstance(await a.session.acquire("app", "f"), Owned)
        for wrong in (None, channel_credentials(tls_files.ca, None, None),
                      channel_credentials(tls_files.ca, tls_files.other_crt, tls_files.other_key)):
            outsider = Etcd(server.endpoints, wrong, timeout_s=1.0)
            try:
                with pytest.raises(EtcdUnavailable):
                    await outsider.get_prefix("/logstream/")
            finally:
                await outsider.close()
    finally:
        await a.close()
        server.stop()


@pytest.mark.asyncio
async def test_the_write_gate_claims_on_first_use_refuses_anothers_key_and_stops_after_a_release(
        etcd_server: EtcdServer) -> None:
    from logstream.coord.gate import EtcdGate, NotOwnerHere

    async with streamers(etcd_server.endpoint, "s1", "s2") as (a, b):
        gate_a, gate_b = EtcdGate(a.session), EtcdGate(b.session)
        keys = [("app", "f"), ("app", "g"), ("app", "f")]
        await gate_a.admit(keys)
        gate_a.check(keys)
        with pytest.raises(NotOwnerHere) as refused:
            await gate_b.admit([("app", "g")])
        assert refused.value.owner == "s1" and refused.value.key == ("app", "g")
        with pytest.raises(NoLease):
            gate_b.check([("app", "g")])
        await a.session.release("app", "g")
        with pytest.raises(NoLease):
            gate_a.check(keys)
        await gate_b.admit([("app", "g")])
        gate_b.check([("app", "g")])
        assert EtcdGate.files_of([owner_key(CLUSTER, "a/b", "c")], CLUSTER) == [("a/b", "c")]


@pytest.mark.asyncio
async def test_a_lease_revoked_behind_a_streamers_back_drops_its_keys_and_a_new_lease_follows(
        etcd_server: EtcdServer) -> None:
    async with streamers(etcd_server.endpoint, "s1") as (a,):
        assert isinstance(await a.session.acquire("app", "f"), Owned)
        old = a.session.holdings
        assert old is not None
        await a.etcd.revoke(old.lease)  # as if it had expired: the record went with it
        gone = await wait_until(lambda: a.lapses, TTL_S, "lapse after the revoke")
        assert a.lapses[0][1] == [owner_key(CLUSTER, "app", "f")]
        assert not a.session.may_write("app", "f") and old.clock.lost
        await wait_until(lambda: a.session.holdings is not None and a.session.holdings is not old, 5.0, "new lease")
        assert time.monotonic() - gone < 5.0
        new = a.session.holdings
        assert new is not None and new.lease != old.lease and not new.held
        assert isinstance(await a.session.acquire("app", "f"), Owned)
