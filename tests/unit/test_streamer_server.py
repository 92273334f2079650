"""Start-up helpers: the advertised address, the registration backoff, the root check; metrics."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from logstream.config.settings import StreamerSettings
from logstream.streamer.lease import Lease
from logstream.node.net import ListenError
from logstream.streamer.main import RootError, check_port_free, prepare_root
from logstream.streamer.metrics import StreamerCollector, register
from logstream.streamer.registration import backoff_delays
from logstream.streamer.server import advertised_address
from logstream.streamer.writer import Writer


@pytest.mark.parametrize(("fields", "expected"), [
    ({"host": "127.0.0.1"}, "127.0.0.1:9000"),
    ({"host": "0.0.0.0", "mediator": "127.0.0.1:8000"}, "127.0.0.1:9000"),
    ({"host": "::", "mediator": "localhost:8000"}, "127.0.0.1:9000"),
    ({"host": "0.0.0.0", "mediator": "10.1.2.3:8000"}, f"{socket.gethostname()}:9000"),
    ({"host": "::1"}, "[::1]:9000"),
    ({"host": "0.0.0.0", "advertise": "logs.example:7000"}, "logs.example:7000"),
])
def test_advertised_address(fields: dict[str, str], expected: str) -> None:
    assert advertised_address(StreamerSettings(**fields), 9000) == expected  # type: ignore[arg-type]


def test_backoff_doubles_up_to_a_cap_with_some_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(0.2, 5.0), 12))
    assert 0.2 <= delays[0] <= 0.24 and 0.4 <= delays[1] <= 0.48
    assert all(5.0 <= d <= 6.0 for d in delays[6:])


def test_root_checks(tmp_path: Path) -> None:
    prepare_root(tmp_path / "new" / "root")
    assert (tmp_path / "new" / "root").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(RootError, match="not a folder"):
        prepare_root(tmp_path / "file")
    with pytest.raises(RootError, match="not a writable folder"):
        prepare_root(tmp_path / "file" / "below")


def test_port_in_use_is_a_listen_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ListenError, match="cannot listen"):
            check_port_free("127.0.0.1", busy.getsockname()[1])
    check_port_free("127.0.0.1", 0)


@pytest.mark.asyncio
async def test_run_closes_idle_files_and_shuts_down_cleanly(tmp_path: Path) -> None:
    import asyncio

    import grpc

    from logstream._proto import logstream_pb2 as pb
    from logstream._proto import logstream_pb2_grpc as pb_grpc
    from logstream.streamer.server import run

    with socket.socket() as probe:  # a free port (run() binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = StreamerSettings(host="127.0.0.1", port=port, path=tmp_path / "logs", idle_close=0.2,
                                fsync="interval", fsync_interval=0.1)  # type: ignore[arg-type]
    stop = asyncio.Event()
    server = asyncio.create_task(run(settings, stop))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        await pb_grpc.LogStreamerStub(channel).Log(pb.LogRequest(filename="idle", line="x"))
        control = pb_grpc.StreamerControlStub(channel)
        assert (await control.Stats(pb.StatsRequest())).open_files == 1
        await asyncio.sleep(1.0)
        assert (await control.Stats(pb.StatsRequest())).open_files == 0
    stop.set()
    await asyncio.wait_for(server, 10)
    assert (tmp_path / "logs" / "idle.log").read_text() == "x\n"


def test_metrics_show_the_legacy_mode(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    lease = Lease(required=True)
    registry = CollectorRegistry()
    unregister = register(StreamerCollector(writer, lease, lambda: "s1"), registry)
    assert b'logstream_streamer_legacy_mode{node="s1"} 0.0' in generate_latest(registry)
    lease.legacy = True
    assert b'logstream_streamer_legacy_mode{node="s1"} 1.0' in generate_latest(registry)
    unregister()
    writer.close()


def test_metrics_show_the_descriptors_held_for_files_and_folders(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    registry = CollectorRegistry()
    unregister = register(StreamerCollector(writer, Lease(required=False), lambda: "s1"), registry)
    writer.append("a/b", "x", b"1\n")
    writer.append("a/b", "y", b"1\n")
    writer.append("", "z", b"1\n")
    body = generate_latest(registry)
    assert b'logstream_streamer_open_files{node="s1"} 3.0' in body
    assert b'logstream_streamer_descriptors{node="s1"} 4.0' in body  # three files, one shared folder
    unregister()
    writer.close()
