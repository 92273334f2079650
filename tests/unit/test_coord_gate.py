"""etcd mode's forward ends (logstream/coord/gate.py): a refusal names the owner in trailing
metadata that a mediator reads back over real gRPC; the mediator's choice of streamer."""

from __future__ import annotations

import grpc
import pytest

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.coord.gate import NotOwnerHere, choose, owner_named
from logstream.keys.paths import FileKey
from logstream.keys.placement import place


class Refusing(pb_grpc.LogStreamerServicer):
    def __init__(self, refusal: NotOwnerHere) -> None:
        self.refusal = refusal

    async def Log(self, request: pb.LogRequest, context: grpc.aio.ServicerContext) -> pb.LogResponse:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(self.refusal),
                            trailing_metadata=self.refusal.trailing_metadata())
        raise AssertionError("unreachable")


@pytest.mark.asyncio
@pytest.mark.parametrize("owner", ["s2", ""])
async def test_a_refusal_names_the_owner_for_the_mediator_to_retry_there(owner: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_LogStreamerServicer_to_server(Refusing(NotOwnerHere(("app", "f"), owner, "not mine")), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.LogStreamerStub(channel).Log(pb.LogRequest(path="app", filename="f", line="x"))  # type: ignore[no-untyped-call]
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert owner_named(caught.value) == (owner or None)
    finally:
        await server.stop(None)


def test_a_mediator_sends_a_key_to_its_owner_else_to_the_rendezvous_member() -> None:
    key = FileKey("app", "f")
    assert choose(key, {("app", "f"): "s9"}, ["s1", "s2"]) == "s9"
    assert choose(key, {}, ["s1", "s2", "s3"]) == place(key, ["s1", "s2", "s3"])
    assert choose(key, {}, []) is None


class FakeSession:
    """A session whose claims take `delay_s` each; it counts how many are in flight at once."""

    def __init__(self, owners: dict[tuple[str, str], str], delay_s: float = 0.01) -> None:
        self.owners = owners
        self.delay_s = delay_s
        self.held: set[tuple[str, str]] = set()
        self.in_flight = self.most_in_flight = self.claims = 0

    def may_write(self, path: str, filename: str) -> bool:
        return (path, filename) in self.held

    async def acquire(self, path: str, filename: str) -> object:
        import asyncio

        from logstream.coord.protocol import NotOwner, Owned

        self.claims += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay_s)
        self.in_flight -= 1
        owner = self.owners.get((path, filename))
        if owner is not None:
            return NotOwner(owner)
        self.held.add((path, filename))
        return Owned(1)

    async def release(self, path: str, filename: str) -> bool:
        import asyncio

        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay_s)
        self.in_flight -= 1
        if (path, filename) not in self.held:
            return False
        self.held.discard((path, filename))
        return True


@pytest.mark.asyncio
async def test_admit_claims_new_keys_concurrently_and_the_first_refused_key_in_order_decides() -> None:
    import time

    from logstream.coord.gate import CLAIMS_IN_FLIGHT, EtcdGate

    session = FakeSession({("app", "k70"): "s7", ("app", "k90"): "s9"})
    gate = EtcdGate(session)  # type: ignore[arg-type]
    keys = [("app", f"k{n}") for n in range(100)]
    with pytest.raises(NotOwnerHere) as refused:
        await gate.admit(keys)
    assert refused.value.owner == "s7" and refused.value.key == ("app", "k70")
    assert session.most_in_flight == CLAIMS_IN_FLIGHT and session.claims == 100
    # Keys already held cost no claim; the rest are claimed together, not one round trip each.
    session.owners.clear()
    started = time.monotonic()
    await gate.admit(keys)
    assert session.claims == 102 and len(session.held) == 100
    assert time.monotonic() - started < 10 * session.delay_s


@pytest.mark.asyncio
async def test_release_sends_the_guarded_deletes_together_and_counts_the_held_keys() -> None:
    from logstream.coord.gate import CLAIMS_IN_FLIGHT, EtcdGate

    session = FakeSession({})
    gate = EtcdGate(session)  # type: ignore[arg-type]
    keys = [("app", f"k{n}") for n in range(100)]
    await gate.admit(keys)
    session.most_in_flight = 0
    assert await gate.release([*keys, ("app", "never-held"), keys[0]]) == 100  # a repeat counts once
    assert session.held == set() and session.most_in_flight == CLAIMS_IN_FLIGHT
