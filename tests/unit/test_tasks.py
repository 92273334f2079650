"""TaskSupervisor: long-lived work that ends is logged and restarted (health down meanwhile); work
that cannot be kept running fails the node; one-shot work is owned and its failures logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from logstream.node import tasks
from logstream.node.tasks import NodeFailed, TaskSupervisor


class Flaky:
    """Work whose first `ends` runs end in the given ways, then runs until cancelled."""

    def __init__(self, *ends: str) -> None:
        self.ends = list(ends)
        self.runs = 0
        self.running = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.ends:
            how = self.ends.pop(0)
            await asyncio.sleep(0)
            if how == "raise":
                raise RuntimeError("boom")
            if how == "cancelled":  # as grpc does to a call whose channel was closed
                raise asyncio.CancelledError()
            return
        self.running.set()
        await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "BACKOFF_FIRST_S", 0.01)


@pytest.mark.asyncio
async def test_work_that_ends_in_any_way_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = TaskSupervisor()
    work = Flaky("raise", "cancelled", "return")
    supervisor.keep("loop", work)
    await asyncio.wait_for(work.running.wait(), 5)
    assert work.runs == 4
    ended = [r for r in caplog.records if "loop" in r.getMessage() and r.levelno == logging.ERROR]
    assert [r.getMessage().split(" unexpectedly")[0] for r in ended] == [
        "background task loop failed", "background task loop was cancelled", "background task loop returned"]
    assert ended[0].exc_info is not None and isinstance(ended[0].exc_info[1], RuntimeError)
    assert supervisor.problem() is None and supervisor.failure is None
    await supervisor.close()


@pytest.mark.asyncio
async def test_health_is_down_while_work_waits_to_restart() -> None:
    reports: list[bool] = []

    async def on_health(serving: bool) -> None:
        reports.append(serving)

    supervisor = TaskSupervisor(on_health=on_health)
    work = Flaky("raise")
    supervisor.keep("pinger", work)
    for _ in range(100):
        if supervisor.problem() is not None:
            break
        await asyncio.sleep(0.001)
    assert supervisor.problem() == "background task down: pinger"
    await asyncio.wait_for(work.running.wait(), 5)
    assert supervisor.problem() is None
    assert reports == [False, True]
    await supervisor.close()


@pytest.mark.asyncio
async def test_work_that_keeps_ending_fails_the_node() -> None:
    stop = asyncio.Event()
    supervisor = TaskSupervisor(stop, max_ends=3, backoff_max_s=0.01)
    work = Flaky(*["raise"] * 10)
    supervisor.keep("loop", work)
    await asyncio.wait_for(stop.wait(), 5)
    assert work.runs == 4  # three restarts, then the fourth end within the window gives up
    assert supervisor.failure is not None and "loop ended 4 times" in supervisor.failure
    with pytest.raises(NodeFailed):
        supervisor.check()
    await supervisor.close()


@pytest.mark.asyncio
async def test_critical_work_that_ends_fails_the_node_at_once() -> None:
    stop = asyncio.Event()
    supervisor = TaskSupervisor(stop)
    work = Flaky("return")
    supervisor.keep("registration", work, critical=True)
    await asyncio.wait_for(stop.wait(), 5)
    assert work.runs == 1 and supervisor.problem() is not None
    await supervisor.close()


@pytest.mark.asyncio
async def test_stop_and_close_end_work_without_a_restart_or_a_failure() -> None:
    supervisor = TaskSupervisor()
    first, second = Flaky(), Flaky()
    kept = supervisor.keep("a", first)
    supervisor.keep("b", second)
    await asyncio.wait_for(asyncio.gather(first.running.wait(), second.running.wait()), 5)
    await kept.stop()
    assert kept.task.done() and first.runs == 1
    await supervisor.close()
    assert second.runs == 1 and supervisor.failure is None and not supervisor.kept
    supervisor.check()


@pytest.mark.asyncio
async def test_one_shot_work_is_owned_and_its_failure_logged(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = TaskSupervisor()

    async def fails() -> None:
        raise ValueError("bad")

    async def hangs() -> None:
        await asyncio.Event().wait()

    failing = supervisor.spawn(fails(), "handoff-x")
    hanging = supervisor.spawn(hangs(), "ping-y")
    await asyncio.wait({failing})
    assert any(r.getMessage() == "task handoff-x failed" and r.exc_info for r in caplog.records)
    await supervisor.close()
    assert hanging.cancelled() and not supervisor.spawned


async def _health(port: int) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)


@pytest.mark.asyncio
async def test_the_mediator_reports_not_serving_while_its_health_loop_is_down_then_exits_non_zero(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from grpc_health.v1 import health_pb2

    from logstream.config.settings import MediatorSettings
    from logstream.mediator import server

    runs = 0
    ended = asyncio.Event()

    async def broken_loop(*args: object) -> None:
        nonlocal runs
        runs += 1
        ended.set()
        raise RuntimeError("health loop bug")

    monkeypatch.setattr(server, "health_loop", broken_loop)
    monkeypatch.setattr(tasks, "BACKOFF_FIRST_S", 0.3)
    monkeypatch.setattr(tasks, "MAX_ENDS", 2)
    bound: list[str] = []
    stop = asyncio.Event()
    settings = MediatorSettings(host="127.0.0.1", port=0)  # type: ignore[call-arg]
    node = asyncio.create_task(server.run(settings, stop, bound.append))
    await asyncio.wait_for(ended.wait(), 10)
    port = int(bound[0].rpartition(":")[2])
    assert await _health(port) == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(NodeFailed, match="health-loop ended 3 times"):
        await asyncio.wait_for(node, 30)
    assert runs == 3


def test_a_node_whose_work_failed_exits_with_code_1() -> None:
    from logstream.node.run import run_until_signalled

    async def serve(stop: asyncio.Event) -> None:
        raise NodeFailed("background task health-loop ended 6 times in 60s")

    async def clean(stop: asyncio.Event) -> None:
        return None

    assert run_until_signalled(serve, loop="asyncio") == 1
    assert run_until_signalled(clean, loop="asyncio") == 0
