"""A streamer with -mediator against a stand-in mediator (a real gRPC Register server in this test):
it registers with retries, writes only while leased by pings, and registers again when unpinged."""

from __future__ import annotations

import signal
import threading
import time
from concurrent import futures
from pathlib import Path

from typing import TYPE_CHECKING

import grpc
import pytest
from helpers import start_node

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import call_metadata

pytestmark = pytest.mark.e2e

FROM_M1 = call_metadata("m1")  # what mediator incarnation m1 attaches to its forwards


class StandInMediator(pb_grpc.RegisterServicer):
    def __init__(self, refuse_first: int) -> None:
        self.calls: list[tuple[float, str, str]] = []
        self.refuse_first = refuse_first
        self.changed = threading.Condition()

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        with self.changed:
            self.calls.append((time.monotonic(), request.id, request.addr))
            self.changed.notify_all()
            if len(self.calls) <= self.refuse_first:
                context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return pb.RegisterResponse(res="Success")

    def wait_calls(self, count: int, timeout_s: float) -> list[tuple[float, str, str]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= count, timeout_s), self.calls
            return list(self.calls)


class StandInStatus(pb_grpc.ClusterStatusServicer):
    """What tells our mediator from the original's: it serves ClusterStatus (streamer/legacy.py)."""

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        return pb.StatusResponse(mediator_id="m1")


def test_register_lease_and_register_again(tmp_path: Path) -> None:
    mediator = StandInMediator(refuse_first=2)
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_RegisterServicer_to_server(mediator, server)
    pb_grpc.add_ClusterStatusServicer_to_server(StandInStatus(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        args = ["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "logs"),
                "-mediator", f"127.0.0.1:{port}"]
        with start_node(args) as node:
            calls = mediator.wait_calls(3, 15)  # two refusals, then success
            assert calls[-1][1:] == (node.address, node.address)
            node.wait_for("registered with mediator")
            with grpc.insecure_channel(node.address) as channel:
                log = pb_grpc.LogStreamerStub(channel).Log
                ping = pb_grpc.PingerStub(channel).Ping
                with pytest.raises(grpc.RpcError) as caught:
                    log(pb.LogRequest(filename="f", line="before any lease"), metadata=FROM_M1)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert ping(pb.PingRequest(a=3, b=4, lease_ms=2000, mediator_id="m1", interval_ms=300,
                                           seq=1)).res == 12
                ping(pb.PingRequest(lease_ms=2000, mediator_id="m1", interval_ms=300, seq=2, acked_seq=1))
                log(pb.LogRequest(filename="f", line="leased"), metadata=FROM_M1)
                registered_at = time.monotonic()
                # No more pings: once it missed one (1.2 intervals, 0.36s) the streamer registers again.
                again = mediator.wait_calls(4, 10)[-1][0]
                assert again - registered_at >= 0.3
                node.wait_for("registering again")
                assert node.stop() == 0
        assert (tmp_path / "logs/f.log").read_text() == "leased\n"
    finally:
        server.stop(None)


def test_registration_over_mutual_tls(tmp_path: Path, tls_files: TlsFiles) -> None:
    """With -crt/-pk/-ca the streamer registers over TLS, presenting its certificate."""
    t = tls_files
    mediator = StandInMediator(refuse_first=0)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_RegisterServicer_to_server(mediator, server)
    creds = grpc.ssl_server_credentials([(t.node_key.read_bytes(), t.node_crt.read_bytes())],
                                        root_certificates=t.ca.read_bytes(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        args = ["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "logs"),
                "-mediator", f"localhost:{port}", "-id", "tls-streamer",
                "-crt", str(t.node_crt), "-pk", str(t.node_key), "-ca", str(t.ca)]
        with start_node(args) as node:
            assert mediator.wait_calls(1, 15)[0][1:] == ("tls-streamer", node.address)
            assert node.stop(signal.SIGINT) == 0
    finally:
        server.stop(None)
