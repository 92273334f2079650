"""Emulations of the Go original ("Log Streamer"), written from its protocol (the compat services
and messages of proto/logstream.proto, whose names and numbers are the original's), for the interop
tests. Each runs in-process on a real socket (a synchronous grpc server in its own threads).

- LegacyStreamer serves only `api.LogStreamer/Log` (appends to <root>/<path>/<filename>.log,
  then answers "Success") and `api.Pinger/Ping` (a*b wrapped to int32). Every other method, unary
  or streaming, gets grpc's own UNIMPLEMENTED, as from a server that does not have it. It calls
  `Register(id, addr)` once, *before* it starts listening, and never again.
- LegacyMediator serves only `api.Register/Register` and `api.LogStreamer/Log`; it pings each
  registered streamer with a plain `Ping(a, b, streamerId)` (no lease) every interval and drops
  one that fails; `Log` is forwarded with unary `Log` to the streamer picked by the filename's
  first letter, and the client is told "Success" even when the forward failed (the original's
  defect).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc


def wrap_int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def _reserve_port() -> socket.socket:
    """A socket bound (not listening) to a free port with SO_REUSEPORT: no other program can take
    the port, connections to it are refused, and grpc's server (SO_REUSEPORT by default) can
    still listen on it later."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _unary(behaviour: Any, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString)


class LegacyStreamer:
    """The original's logStreamer: Log and Ping only; registers once, then listens."""

    def __init__(self, root: Path, mediator: str | None, streamer_id: str, listen_delay_s: float = 0.5) -> None:
        self.root = root
        self.id = streamer_id
        reserved = _reserve_port()
        self.port = int(reserved.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.lines = 0
        self.pings = 0
        self.register_reply: str | None = None
        self.registered_at: float | None = None  # monotonic
        self.listening_at = 0.0
        self._lock = threading.Lock()
        if mediator is not None:
            # The original registers first and listens afterwards: a ping that comes at once finds
            # nothing listening.
            with grpc.insecure_channel(mediator) as chan:
                reply = pb_grpc.RegisterStub(chan).Register(  # type: ignore[no-untyped-call]
                    pb.RegisterRequest(id=streamer_id, addr=self.address), timeout=5)
                self.register_reply = reply.res
                self.registered_at = time.monotonic()
            time.sleep(listen_delay_s)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("api.LogStreamer", {
                "Log": _unary(self._log, pb.LogRequest, pb.LogResponse)}),
            grpc.method_handlers_generic_handler("api.Pinger", {
                "Ping": _unary(self._ping, pb.PingRequest, pb.PingResponse)}),
        ))
        try:
            if self._server.add_insecure_port(self.address) != self.port:
                raise RuntimeError(f"legacy streamer: cannot listen on {self.address}")
            self._server.start()
        finally:
            reserved.close()
        self.listening_at = time.monotonic()

    def _log(self, request: pb.LogRequest, context: grpc.ServicerContext) -> pb.LogResponse:
        folder = self.root / request.path
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            line = request.line if request.line.endswith("\n") else request.line + "\n"
            with open(folder / f"{request.filename}.log", "a", encoding="utf-8") as file:
                file.write(line)
            self.lines += 1
        return pb.LogResponse(res="Success")

    def _ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        with self._lock:
            self.pings += 1
        return pb.PingResponse(res=wrap_int32(request.a * request.b))

    def close(self) -> None:
        self._server.stop(None).wait(5)


class LegacyMediator:
    """The original's logMediator: Register, plain pings, first-letter routing with unary Log."""

    def __init__(self, interval_s: float = 0.3, ping_timeout_s: float = 2.0) -> None:
        self.interval_s = interval_s
        # Generous: a busy test machine must not make this mediator drop a streamer for good.
        self.ping_timeout_s = ping_timeout_s
        self.streamers: dict[str, str] = {}  # id -> addr, in registration order
        self.registrations: list[tuple[str, str]] = []
        self.forward_errors: list[grpc.StatusCode] = []
        self.ping_errors: list[grpc.StatusCode] = []
        self.pinged: dict[str, int] = {}
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("api.Register", {
                "Register": _unary(self._register, pb.RegisterRequest, pb.RegisterResponse)}),
            grpc.method_handlers_generic_handler("api.LogStreamer", {
                "Log": _unary(self._log, pb.LogRequest, pb.LogResponse)}),
        ))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()
        self._pinger = threading.Thread(target=self._ping_loop, name="legacy-mediator-pinger", daemon=True)
        self._pinger.start()

    def _channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            if addr not in self._channels:
                self._channels[addr] = grpc.insecure_channel(addr)
            return self._channels[addr]

    def _register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        with self._lock:
            self.streamers[request.id] = request.addr
            self.registrations.append((request.id, request.addr))
        return pb.RegisterResponse(res="Success")

    def _ping_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                known = list(self.streamers.items())
            for streamer_id, addr in known:
                a, b = random.randint(-2**31, 2**31 - 1), random.randint(-2**31, 2**31 - 1)
                try:
                    reply = pb_grpc.PingerStub(self._channel(addr)).Ping(  # type: ignore[no-untyped-call]
                        pb.PingRequest(a=a, b=b, streamerId=streamer_id), timeout=self.ping_timeout_s)
                    healthy = reply.res == wrap_int32(a * b)
                except grpc.RpcError as exc:
                    self.ping_errors.append(exc.code())  # type: ignore[attr-defined]
                    healthy = False
                with self._lock:
                    if healthy:
                        self.pinged[streamer_id] = self.pinged.get(streamer_id, 0) + 1
                    elif self.streamers.get(streamer_id) == addr:
                        del self.streamers[streamer_id]

    def _log(self, request: pb.LogRequest, context: grpc.ServicerContext) -> pb.LogResponse:
        with self._lock:
            known = list(self.streamers.values())
        if known:
            letter = (request.filename or "?")[0].lower()
            addr = known[ord(letter) % len(known)]
            try:
                pb_grpc.LogStreamerStub(self._channel(addr)).Log(request, timeout=5)  # type: ignore[no-untyped-call]
            except grpc.RpcError as exc:
                with self._lock:
                    self.forward_errors.append(exc.code())  # type: ignore[attr-defined]
        return pb.LogResponse(res="Success")  # whatever happened: the original's defect

    def close(self) -> None:
        self._stop.set()
        self._pinger.join(5)
        self._server.stop(None).wait(5)
        with self._lock:
            for chan in self._channels.values():
                chan.close()
            self._channels.clear()
