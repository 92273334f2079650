"""The mediator's LogStream handler owns its tasks: however a call ends (its client cancels it, a
write fails, a request is bad), every write it started and its reader have ended when it returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from logstream._proto import logstream_pb2 as pb
from logstream.keys.chunks import Chunk
from logstream.mediator.counters import Counters
from logstream.mediator.router import RouteError, Router
from logstream.mediator.service import STREAM_WINDOW, LogStreamerServicer, Validator


class Aborted(Exception):
    """What the fake context's abort raises (grpc raises its own AbortError)."""


class FakeContext:
    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code)


class BlockingRouter:
    """Every write blocks until cancelled, except those listed in `fail_at` (by order of arrival),
    which fail once two more writes have started."""

    def __init__(self, fail_at: frozenset[int] = frozenset()) -> None:
        self.counters = Counters()
        self.writes: list[asyncio.Task[Any]] = []
        self.fail_at = fail_at

    async def write(self, chunks: list[Chunk], timeout_s: float | None) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.writes.append(task)
        if len(self.writes) - 1 in self.fail_at:
            await until(lambda: len(self.writes) >= len(self.fail_at) + 2, "later writes")
            raise RouteError(grpc.StatusCode.UNAVAILABLE, "its streamer failed")
        await asyncio.Event().wait()


async def requests(count: int, then_hang: bool) -> AsyncIterator[pb.LogBatchRequest]:
    for i in range(count):
        yield pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename=f"f{i}", data=b"x\n")])
    if then_hang:  # a client that keeps the stream open without sending more
        await asyncio.Event().wait()


async def until(condition: Any, what: str) -> None:
    async with asyncio.timeout(5):  # fails loudly instead of hanging
        while not condition():
            await asyncio.sleep(0.005)


async def consume(servicer: LogStreamerServicer, count: int) -> list[pb.LogBatchResponse]:
    stream = servicer.LogStream(requests(count, then_hang=True), cast(grpc.aio.ServicerContext, FakeContext()))
    return [reply async for reply in stream]


def started_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


@pytest.mark.asyncio
async def test_a_cancelled_stream_leaves_no_task_behind() -> None:
    """More requests than the window: the reader waits to put a started write when the call is
    cancelled (that write was never cancelled before, and ran on after the call)."""
    router = BlockingRouter()
    servicer = LogStreamerServicer(cast(Router, router), Validator(max_line=100))
    before = started_tasks()
    call = asyncio.create_task(consume(servicer, STREAM_WINDOW + 5))
    await until(lambda: len(router.writes) >= STREAM_WINDOW + 2, "a full window of writes")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert [task.get_name() for task in router.writes if not task.done()] == []
    assert started_tasks() - before == set(), "the call left tasks running"


@pytest.mark.asyncio
async def test_a_failed_write_ends_the_stream_and_every_other_write() -> None:
    router = BlockingRouter(fail_at=frozenset({0}))
    servicer = LogStreamerServicer(cast(Router, router), Validator(max_line=100))
    before = started_tasks()
    with pytest.raises(Aborted) as caught:
        await asyncio.wait_for(consume(servicer, 4), 5)
    assert caught.value.args == (grpc.StatusCode.UNAVAILABLE,)
    assert len(router.writes) >= 2, "the writes after the failed one never started"
    assert [task.get_name() for task in router.writes if not task.done()] == []
    assert started_tasks() - before == set(), "the call left tasks running"


@pytest.mark.asyncio
async def test_a_bad_request_after_good_ones_ends_their_writes_too() -> None:
    router = BlockingRouter()
    servicer = LogStreamerServicer(cast(Router, router), Validator(max_line=100))

    async def good_then_bad() -> AsyncIterator[pb.LogBatchRequest]:
        yield pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename="ok", data=b"x\n")])
        await until(lambda: len(router.writes) == 1, "the first write")
        yield pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename="", data=b"x\n")])

    before = started_tasks()
    stream = servicer.LogStream(good_then_bad(), cast(grpc.aio.ServicerContext, FakeContext()))
    async def first_reply() -> pb.LogBatchResponse:
        return await anext(stream)

    call = asyncio.create_task(first_reply())  # waits on the first write, which blocks
    await until(lambda: len(router.writes) == 1, "the first write")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert [task.done() for task in router.writes] == [True]
    assert started_tasks() - before == set(), "the call left tasks running"
