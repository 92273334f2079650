"""The mediator's input validation, status formatting and metrics, without a network; Register's
cluster-token check and undecodable bodies over a real in-process server."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import Guard, call_metadata
from logstream.mediator.metrics import MediatorCollector, register
from logstream.keys.paths import FileKey
from logstream.mediator.config import RouterConfig
from logstream.mediator.router import Router
from logstream.mediator.server import build_server
from logstream.mediator.service import BadInput, ClusterStatusServicer, Validator, check_address
from logstream.node.cluster_status import format_table


def test_equivalent_paths_are_one_key_so_one_owner() -> None:
    validator = Validator(max_line=10)
    assert validator.key("a//./b/", "f") == validator.key("a/b", "f") == FileKey("a/b", "f")
    assert validator.key("", "f") == validator.key(".", "f") == FileKey("", "f")


def test_chunks_are_newline_terminated_and_counted() -> None:
    validator = Validator(max_line=10)
    assert validator.chunk("p", "f", b"a\nb") == (FileKey("p", "f"), b"a\nb\n", 2)
    assert validator.chunk("p", "f", b"") == (FileKey("p", "f"), b"", 0)  # forwarded: the owner checks its path
    with pytest.raises(BadInput, match="longer than the limit of 10"):
        validator.chunk("p", "f", b"short\n" + b"x" * 11 + b"\n")
    request = pb.LogBatchRequest(chunks=[pb.LogChunk(filename="ok", data=b"1\n"), pb.LogChunk(filename="", data=b"x")])
    with pytest.raises(BadInput, match=r"^filename is empty .*\(chunk 2 of 2 in the request\)$"):
        validator.batch(request)
    with pytest.raises(BadInput, match=r"^filename is empty"):  # one chunk: no position to give
        validator.batch(pb.LogBatchRequest(chunks=[pb.LogChunk(filename="", data=b"x")]))


def test_rotated_looking_names_are_refused_like_the_streamer_does() -> None:
    with pytest.raises(BadInput, match="rotated"):
        Validator(max_line=10).key("", "app_20260101T000000.000000Z")


@pytest.mark.parametrize("addr", ["127.0.0.1:8080", "[::1]:1", "host.example:65535"])
def test_good_register_addresses(addr: str) -> None:
    assert check_address(addr) == addr


def test_status_table_lists_streamers_and_counters() -> None:
    table = format_table({  # a mediator object of `status --json` (schema 1)
        "schema": 1, "name": None, "addr": "127.0.0.1:8000", "mediator_id": "abc", "error": None,
        "streamers": [{"id": "s1", "addr": "127.0.0.1:9001", "alive": True, "files": ["a", "b/c"], "lines": 7,
                       "bytes": 70, "last_seen_s": 0.25},
                      {"id": "s2", "addr": "127.0.0.1:9002", "alive": False, "files": [], "lines": 0, "bytes": 0,
                       "last_seen_s": None}],
        "counters": {"lines": 7},
    })
    lines = table.splitlines()
    assert lines[0] == "mediator 127.0.0.1:8000 (id abc)"
    assert lines[1].split() == ["ID", "ADDRESS", "ALIVE", "FILES", "LINES", "BYTES", "LAST", "PING"]
    assert lines[2].split() == ["s1", "127.0.0.1:9001", "yes", "2", "7", "70", "0.2s", "ago"]
    assert lines[3].split() == ["s2", "127.0.0.1:9002", "no", "0", "0", "0", "-"]
    assert lines[4] == "counters: lines 7"


def test_metrics_are_exposed_for_prometheus() -> None:
    async def build() -> Router:
        return Router(RouterConfig(), None, "m1")

    router = asyncio.run(build())
    router.counters.requests["Log"] += 3
    router.counters.lines += 3
    router.counters.observe(0.002)
    registry = CollectorRegistry()
    unregister = register(MediatorCollector(router, lambda: "med"), registry)
    text = generate_latest(registry).decode()
    unregister()
    assert 'logstream_mediator_requests_total{node="med",rpc="Log"} 3.0' in text
    assert 'logstream_mediator_lines_total{node="med"} 3.0' in text
    assert 'logstream_mediator_streamers_live{node="med"} 0.0' in text
    assert 'logstream_mediator_ack_latency_seconds_bucket{le="0.0025",node="med"} 1.0' in text


@pytest.mark.asyncio
async def test_register_needs_the_cluster_token_and_garbage_is_invalid_argument() -> None:
    router = Router(RouterConfig(), None, "m1")
    built = build_server(router, Validator(max_line=100), "127.0.0.1", 0, guard=Guard("t0ken"))
    await built.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = pb_grpc.RegisterStub(channel)
            request = pb.RegisterRequest(id="s0", addr="127.0.0.1:1")
            for metadata in ((), call_metadata(token="wrong")):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Register(request, metadata=metadata, timeout=5)
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert router.status().streamers == []
            reply = await stub.Register(request, metadata=call_metadata(token="t0ken"), timeout=5)
            assert reply.res == "Success" and [s.id for s in router.status().streamers] == ["s0"]
            garbage = b"\xff\xff\xff\xff\x0f not a protobuf"
            for method in ("/api.Register/Register", "/api.LogStreamer/Log", "/api.ClusterStatus/Status"):
                call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(garbage, timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            stream = channel.stream_stream("/api.LogStreamer/LogStream", request_serializer=bytes,
                                           response_deserializer=bytes)(timeout=5)
            await stream.write(garbage)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.read()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await built.server.stop(None)
        await router.close()


@pytest.mark.asyncio
async def test_a_cached_status_asks_no_streamer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A streamer's probe at registration (`cached`) must not make the mediator ask every streamer."""
    router = Router(RouterConfig(), None, "m1")
    asked: list[float] = []

    async def refresh_stats(timeout_s: float = 1.0) -> None:
        asked.append(timeout_s)

    monkeypatch.setattr(router, "refresh_stats", refresh_stats)
    servicer = ClusterStatusServicer(router)
    assert (await servicer.Status(pb.StatusRequest(cached=True), None)).mediator_id == "m1"  # type: ignore[arg-type]
    assert asked == []
    await servicer.Status(pb.StatusRequest(), None)  # type: ignore[arg-type]
    assert len(asked) == 1
    await router.close()


def test_the_validators_cache_is_bounded_and_evicts_only_its_oldest_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from logstream.mediator import service

    checked: list[str] = []
    real = service.validate_target

    def counting(path: str, filename: str):  # type: ignore[no-untyped-def]
        checked.append(filename)
        return real(path, filename)

    monkeypatch.setattr(service, "validate_target", counting)
    validator = service.Validator(max_line=100, cache_size=8)
    for i in range(10):
        validator.key("app", f"f{i}")
    assert len(validator._keys) == 8
    checked.clear()
    for i in range(2, 10):  # the 8 most recent names: no second check
        assert validator.key("app", f"f{i}") == FileKey("app", f"f{i}")
    assert checked == []
    validator.key("app", "f0")
    assert checked == ["f0"] and len(validator._keys) == 8
