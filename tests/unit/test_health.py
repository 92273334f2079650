"""Liveness and readiness (node/health.py): the pure verdict, its publication to a real grpc health
service (Check, List, Watch), the stalled-loop rule; reflection served as v1 and v1alpha."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from logstream.node import reflection
from logstream.node import run as node
from logstream.node.health import STALL_S, WRITE_SERVICE, NodeHealth, Verdict, judge

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("api.LogStreamer", "api.Register")


def test_only_the_write_service_follows_readiness() -> None:
    assert Verdict(None, None).statuses(SERVICES) == {"": SERVING, "api.LogStreamer": SERVING,
                                                      "api.Register": SERVING}
    assert Verdict(None, "no live streamer").statuses(SERVICES) == {
        "": SERVING, "api.LogStreamer": NOT_SERVING, "api.Register": SERVING}
    assert Verdict("task down", "task down").statuses(SERVICES) == {
        "": NOT_SERVING, "api.LogStreamer": NOT_SERVING, "api.Register": NOT_SERVING}


def test_a_node_that_is_not_live_is_not_ready_for_that_reason() -> None:
    assert judge("task down", None) == Verdict("task down", "task down")
    assert judge("task down", "no lease") == Verdict("task down", "task down")
    assert judge(None, "no lease") == Verdict(None, "no lease")
    assert judge(None, None) == Verdict(None, None)


def test_a_stalled_loop_is_not_live() -> None:
    now = [100.0]
    health = NodeHealth(lambda: None, lambda: None, clock=lambda: now[0])
    assert health.live() == "starting"  # nothing published yet
    health.verdict = health.evaluate()
    assert health.live() is None and health.ready() is None
    now[0] += STALL_S + 1
    problem = health.live()
    assert problem is not None and "stalled" in problem
    assert health.ready() == problem


@pytest.mark.asyncio
async def test_published_verdicts_reach_check_list_and_watch() -> None:
    ready: list[str | None] = ["no lease yet"]
    health = NodeHealth(lambda: None, lambda: ready[0])
    built = node.build_server(lambda server: None, SERVICES, "127.0.0.1", 0)
    node.attach_health(built, health)
    await built.server.start()
    try:
        await health.publish()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def check(service: str) -> int:
                return int((await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status)

            assert await check("") == SERVING
            assert await check(WRITE_SERVICE) == NOT_SERVING
            assert await check("api.Register") == SERVING
            listed = await stub.List(health_pb2.HealthListRequest(), timeout=5)
            assert {name: reply.status for name, reply in listed.statuses.items()} == {
                "": SERVING, WRITE_SERVICE: NOT_SERVING, "api.Register": SERVING}
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=WRITE_SERVICE))
            assert (await watch.read()).status == NOT_SERVING
            ready[0] = None
            await health.publish()
            assert (await watch.read()).status == SERVING
            assert await check(WRITE_SERVICE) == SERVING
            assert health.ready() is None
            watch.cancel()
    finally:
        await node.stop_serving(built, 1.0)


async def _reflect(channel: grpc.aio.Channel, service: str,
                   request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
    call = channel.stream_stream(f"/{service}/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)(iter([request]))
    replies = [reply async for reply in call]
    assert len(replies) == 1
    return replies[0]


@pytest.mark.asyncio
async def test_reflection_is_served_as_v1_and_v1alpha_and_v1_can_be_described() -> None:
    from google.protobuf import descriptor_pb2

    built = node.build_server(lambda server: None, ("api.LogStreamer",), "127.0.0.1", 0)
    await built.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            for service in (reflection.ALPHA_SERVICE, reflection.V1_SERVICE):
                listed = await _reflect(channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))
                names = {entry.name for entry in listed.list_services_response.service}
                assert {"api.LogStreamer", "grpc.health.v1.Health", reflection.ALPHA_SERVICE,
                        reflection.V1_SERVICE} <= names
                described = await _reflect(channel, service, reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol=reflection.V1_SERVICE))
                files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                         for raw in described.file_descriptor_response.file_descriptor_proto]
                v1 = next(f for f in files if f.name == reflection.V1_FILE)
                assert v1.package == "grpc.reflection.v1"
                method = v1.service[0].method[0]
                assert (method.input_type, method.output_type) == (
                    ".grpc.reflection.v1.ServerReflectionRequest", ".grpc.reflection.v1.ServerReflectionResponse")
    finally:
        await node.stop_serving(built, 1.0)


def test_v1_descriptor_is_v1alpha_renamed_field_for_field() -> None:
    from google.protobuf import descriptor_pb2

    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    v1 = reflection.v1_file_proto()
    assert [m.name for m in v1.message_type] == [m.name for m in alpha.message_type]
    for mine, theirs in zip(v1.message_type, alpha.message_type, strict=True):
        assert [(f.name, f.number, f.type, f.label, f.type_name.replace("v1alpha", "v1")) for f in theirs.field] == [
            (f.name, f.number, f.type, f.label, f.type_name) for f in mine.field]


def test_streamer_readiness_follows_its_lease(tmp_path: Path) -> None:
    from logstream.streamer.lease import Lease
    from logstream.streamer.server import readiness
    from logstream.streamer.service import StreamerCore
    from logstream.streamer.writer import Writer

    now = [10.0]
    writer = Writer(tmp_path / "root")
    try:
        standalone = StreamerCore(writer, Lease(required=False))
        assert readiness(standalone, None) is None
        lease = Lease(required=True, clock=lambda: now[0])
        core = StreamerCore(writer, lease)
        assert readiness(core, "m:8000") == "no lease yet from the mediator at m:8000"
        lease.on_ping(1500, "m1", 1000, seq=1)
        lease.on_ping(1500, "m1", 1000, seq=2, acked_seq=1)  # granted from the first ping's receipt
        assert readiness(core, "m:8000") is None
        now[0] += 3.5
        assert readiness(core, "m:8000") == "lease from the mediator at m:8000 lapsed 2.0s ago"
        lease.legacy = True  # under the original's mediator there is no lease to wait for
        assert readiness(core, "m:8000") is None
        core.closing = True
        assert readiness(core, "m:8000") == "shutting down"
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_readiness_changes_are_logged_once_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    reason: list[str | None] = [None]
    health = NodeHealth(lambda: None, lambda: reason[0])
    with caplog.at_level("INFO", logger="logstream.node.health"):
        await health.publish()  # the first verdict is not news
        for seconds in (0.1, 0.3, 0.5):
            reason[0] = f"lease lapsed {seconds}s ago"
            await health.publish()
        reason[0] = None
        await health.publish()
        await health.publish()
    assert [r.getMessage() for r in caplog.records] == ["not ready: lease lapsed 0.1s ago",
                                                        "ready: taking writes"]



def test_a_node_not_ready_on_purpose_says_so_as_information(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from logstream.node.health import NodeHealth, OnPurpose

    reasons: list[str | None] = [None, OnPurpose("every streamer left (a clean stop)"), None, "no live streamer"]
    health = NodeHealth(lambda: None, lambda: reasons[0])

    async def walk() -> None:
        await health.publish()  # starting -> ready: not a transition worth a line
        for reason in reasons[1:]:
            reasons[0] = reason
            await health.publish()

    with caplog.at_level(logging.INFO, logger="logstream.node.health"):
        asyncio.run(walk())
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "ready" in r.getMessage()]
    assert said == [(logging.INFO, "not ready: every streamer left (a clean stop)"),
                    (logging.INFO, "ready: taking writes"),
                    (logging.WARNING, "not ready: no live streamer")]
