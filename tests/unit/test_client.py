"""The clients against a real in-memory LogStreamer: batching keeps lines and order, retries are
bounded and only for UNAVAILABLE/DEADLINE_EXCEEDED (the logging handler: test_handler.py)."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from logstream import client as lc
from logstream.node import tls
from logstream.config.settings import StreamerSettings
from netports import refusing_port

if TYPE_CHECKING:
    from tests.conftest import MemoryLogServer, TlsFiles

FAST = lc.RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.02)


# ---------------------------------------------------------------- pure parts

def test_encode_line_ends_with_exactly_one_newline() -> None:
    assert lc.encode_line("a") == b"a\n"
    assert lc.encode_line("a\n") == b"a\n"
    assert lc.encode_line("") == b"\n"
    assert lc.encode_line(b"\xff\xfe") == b"\xff\xfe\n"
    assert lc.encode_line("é") == "é\n".encode()


def test_batches_respect_line_and_byte_limits_and_keep_order() -> None:
    lines = [f"line {n}" for n in range(25)]
    out = list(lc.batches("p", "f", lines, max_lines=10, max_bytes=10_000))
    assert [b.lines for b in out] == [10, 10, 5]
    assert b"".join(b.data for b in out).decode().splitlines() == lines
    by_bytes = list(lc.batches("p", "f", ["aaaa", "bbbb", "cccc"], max_lines=100, max_bytes=10))
    assert [b.data for b in by_bytes] == [b"aaaa\nbbbb\n", b"cccc\n"]
    assert [b.data for b in lc.batches("p", "f", ["x" * 50, "y"], 100, 10)] == [b"x" * 50 + b"\n", b"y\n"]


def test_batches_are_lazy() -> None:
    endless = (f"{n}" for n in itertools.count())
    first = next(lc.batches("p", "f", endless, max_lines=3, max_bytes=1000))
    assert first.data == b"0\n1\n2\n" and next(endless) == "4"  # "3" opened the second batch


def test_retry_delays_grow_and_are_capped() -> None:
    policy = lc.RetryPolicy(attempts=6, first_delay_s=0.1, max_delay_s=0.5)
    assert policy.delays(lambda: 1.0) == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert policy.delays(lambda: 0.0) == [0.0] * 5
    assert lc.NO_RETRY.delays() == []


def test_what_is_retried_is_decided_on_the_code_alone() -> None:
    assert {code for code in grpc.StatusCode if lc.is_retryable(code)} == {
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


# ---------------------------------------------------------------- asyncio client

@pytest.mark.asyncio
async def test_async_log_and_log_many(memory_server: MemoryLogServer) -> None:
    async with lc.LogClient(memory_server.target, batch_lines=100) as client:
        await client.log("app", "one", "hello")
        assert await client.log_many("app", "many", (f"n{n}" for n in range(250))) == 250
    assert memory_server.lines("app", "one") == ["hello"]
    assert memory_server.lines("app", "many") == [f"n{n}" for n in range(250)]
    assert memory_server.calls["LogBatch"] == 3


@pytest.mark.asyncio
async def test_async_retries_unavailable_then_succeeds(memory_server: MemoryLogServer) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    memory_server.fail(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    async with lc.LogClient(memory_server.target, retry=lc.RetryPolicy(attempts=3), sleep=sleep) as client:
        assert await client.log_many("a", "b", ["x", "y"]) == 2
    assert memory_server.lines("a", "b") == ["x", "y"]
    assert memory_server.calls["LogBatch"] == 3 and len(slept) == 2


@pytest.mark.asyncio
async def test_async_gives_up_after_the_last_attempt(memory_server: MemoryLogServer) -> None:
    memory_server.fail(*[grpc.StatusCode.UNAVAILABLE] * 3)
    async with lc.LogClient(memory_server.target, retry=FAST) as client:
        with pytest.raises(lc.SendError) as info:
            await client.log("a", "b", "x")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and info.value.attempts == 3
    assert memory_server.calls["Log"] == 3 and memory_server.lines("a", "b") == []


@pytest.mark.asyncio
async def test_async_never_retries_invalid_argument(memory_server: MemoryLogServer) -> None:
    async with lc.LogClient(memory_server.target, retry=FAST, batch_lines=2) as client:
        await client.log_many("a", "ok", ["1", "2"])
        with pytest.raises(lc.SendError) as info:
            await client.log_many("../up", "f", ["1", "2", "3"])
    error = info.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.attempts == 1
    assert "'..' segment" in error.details and str(error).startswith(f"{memory_server.target}: INVALID_ARGUMENT:")
    assert memory_server.calls["LogBatch"] == 2


@pytest.mark.asyncio
async def test_async_falls_back_to_unary_log_without_log_batch(
        memory_server_factory: Callable[..., MemoryLogServer]) -> None:
    server = memory_server_factory(batch=False)
    async with lc.LogClient(server.target, retry=FAST) as client:
        assert await client.log_many("a", "b", ["1", "2", "3"]) == 3
        assert await client.log_many("a", "b", ["4"]) == 1
    assert server.lines("a", "b") == ["1", "2", "3", "4"]
    assert server.calls["LogBatch"] == 1 and server.calls["Log"] == 4


@pytest.mark.asyncio
async def test_async_client_over_mutual_tls(memory_server_factory: Callable[..., MemoryLogServer],
                                            tls_files: TlsFiles) -> None:
    settings = StreamerSettings.model_validate(dict(ca=tls_files.ca, crt=tls_files.node_crt, pk=tls_files.node_key))
    server = memory_server_factory(creds=tls.server_credentials(settings))
    async with lc.LogClient(server.target, tls_files.ca, tls_files.client_crt, tls_files.client_key) as client:
        await client.log("a", "b", "secret")
    async with lc.LogClient(server.target, tls_files.ca, retry=FAST) as anonymous:
        with pytest.raises(lc.SendError) as info:
            await anonymous.log("a", "b", "intruder")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert server.lines("a", "b") == ["secret"]


# ---------------------------------------------------------------- blocking client

def test_sync_client_round_trip_and_retries(memory_server: MemoryLogServer) -> None:
    slept: list[float] = []
    memory_server.fail(grpc.StatusCode.UNAVAILABLE)
    with lc.SyncLogClient(memory_server.target, batch_bytes=20, sleep=slept.append) as client:
        client.log("p", "f", "first")
        assert client.log_many("p", "f", ["second line", "third line", b"fourth\n"]) == 3
        with pytest.raises(lc.SendError) as info:
            client.log("p", "", "x")
    assert memory_server.lines("p", "f") == ["first", "second line", "third line", "fourth"]
    assert len(slept) == 1 and info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_sync_client_connection_refused_is_bounded() -> None:
    began = time.monotonic()
    with refusing_port() as port, lc.SyncLogClient(f"127.0.0.1:{port}", retry=FAST, timeout_s=2) as client:
        with pytest.raises(lc.SendError) as info:
            client.log_many("p", "f", ["x"])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and info.value.attempts == 3
    assert time.monotonic() - began < 5


# ---------------------------------------------------------------- several targets (mediators)

def test_targets_are_a_comma_list_or_a_sequence_and_a_grpc_address_list_is_one() -> None:
    assert lc.parse_targets("a:1, b:2,") == ["a:1", "b:2"]
    assert lc.parse_targets(["a:1", " b:2 "]) == ["a:1", "b:2"]
    assert lc.parse_targets("ipv4:127.0.0.1:1,127.0.0.1:2") == ["ipv4:127.0.0.1:1,127.0.0.1:2"]
    with pytest.raises(ValueError):
        lc.parse_targets(" , ")


def test_rotation_stays_on_a_target_that_answers_and_moves_after_a_failure() -> None:
    rotation = lc.Rotation(3)
    assert rotation.start() == 2 and rotation.current == 0
    rotation.fail(0)
    rotation.fail(1)
    assert rotation.current == 2
    rotation.fail(2)
    assert rotation.current == 0


def test_calls_failing_together_on_one_target_move_the_client_on_once() -> None:
    rotation = lc.Rotation(2)
    rotation.fail(0)  # the first of two calls in flight on target 0 fails
    rotation.fail(0)  # the second: already moved on, stays on target 1
    assert rotation.current == 1


@pytest.mark.asyncio
async def test_async_moves_to_the_next_mediator_at_once_and_stays_there(memory_server: MemoryLogServer) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with refusing_port() as port:
        dead = f"127.0.0.1:{port}"
        async with lc.LogClient(f"{dead},{memory_server.target}", retry=lc.NO_RETRY, sleep=sleep) as client:
            assert await client.log_many("a", "b", ["x"]) == 1
            assert await client.log_many("a", "b", ["y"]) == 1
    assert memory_server.lines("a", "b") == ["x", "y"] and memory_server.calls["LogBatch"] == 2
    assert slept == []  # the second mediator was tried without waiting


@pytest.mark.asyncio
async def test_async_does_not_move_on_a_definite_refusal(memory_server_factory: Callable[..., MemoryLogServer]) -> None:
    first, second = memory_server_factory(), memory_server_factory()
    async with lc.LogClient([first.target, second.target], retry=FAST) as client:
        with pytest.raises(lc.SendError) as info:
            await client.log_many("../up", "f", ["1"])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.target == first.target
    assert second.calls["LogBatch"] == 0


def test_sync_tries_every_mediator_once_per_round_then_backs_off(memory_server: MemoryLogServer) -> None:
    slept: list[float] = []
    memory_server.fail(grpc.StatusCode.UNAVAILABLE)
    with refusing_port() as port:
        dead = f"127.0.0.1:{port}"
        with lc.SyncLogClient(f"{memory_server.target},{dead}", retry=lc.RetryPolicy(attempts=2),
                              sleep=slept.append) as client:
            # the live one: UNAVAILABLE; the dead one: refused; one wait; the live one again (it answers)
            assert client.log_many("a", "b", ["x"]) == 1
    assert memory_server.lines("a", "b") == ["x"] and len(slept) == 1


@pytest.mark.asyncio
async def test_async_calls_in_flight_together_all_reach_the_live_mediator(memory_server: MemoryLogServer) -> None:
    import asyncio

    with refusing_port() as port:
        dead = f"127.0.0.1:{port}"
        async with lc.LogClient(f"{dead},{memory_server.target}", retry=lc.NO_RETRY) as client:
            sent = await asyncio.gather(*(client.log_many("a", f"f{n}", ["x"]) for n in range(8)))
    assert sent == [1] * 8


@pytest.mark.asyncio
async def test_a_name_resolving_to_several_mediators_spreads_calls_over_them(
        memory_server_factory: Callable[..., MemoryLogServer]) -> None:
    first, second = memory_server_factory(), memory_server_factory()
    # grpc's address list stands for a DNS name with several addresses: one resolver result.
    both = f"ipv4:{first.target},{second.target}"
    async with lc.LogClient(both) as client:
        for n in range(20):
            await client.log("a", "b", f"line {n}")
    assert first.calls["Log"] > 0 and second.calls["Log"] > 0
    assert sorted(first.lines("a", "b") + second.lines("a", "b")) == sorted(f"line {n}" for n in range(20))
