"""Shared test setup: Hypothesis profiles (dev is quick, ci is thorough), TLS test files and an
in-memory LogStreamer server."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS tests: a CA, a node certificate (server and client use, valid for
    127.0.0.1, ::1 and localhost), a client certificate, and an unrelated CA with its own cert."""

    ca: Path
    node_crt: Path
    node_key: Path
    client_crt: Path
    client_key: Path
    other_ca: Path
    other_crt: Path
    other_key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    from logstream.commands.certs import make_ca, make_cert

    folder = tmp_path_factory.mktemp("tls")
    hosts = ["127.0.0.1", "::1", "localhost"]
    ca = make_ca("logstream test CA")
    other = make_ca("unrelated test CA")
    issued = {
        "ca.crt": ca.cert_pem,
        "other-ca.crt": other.cert_pem,
    }
    for stem, authority, server in (("node", ca, True), ("client", ca, False), ("other", other, True)):
        cert = make_cert(authority, hosts if server else [], common_name=f"test {stem}", server=server)
        issued[f"{stem}.crt"], issued[f"{stem}.key"] = cert.cert_pem, cert.key_pem
    for name, data in issued.items():
        (folder / name).write_bytes(data)
    return TlsFiles(
        ca=folder / "ca.crt", node_crt=folder / "node.crt", node_key=folder / "node.key",
        client_crt=folder / "client.crt", client_key=folder / "client.key",
        other_ca=folder / "other-ca.crt", other_crt=folder / "other.crt", other_key=folder / "other.key",
    )


class MemoryLogServer:
    """A real grpc.aio LogStreamer on 127.0.0.1:0, in its own thread and event loop, that keeps lines
    in a dict. It validates like a streamer (INVALID_ARGUMENT for an empty or '/'-holding filename or
    a '..' path) and can be told to fail the next calls with given status codes."""

    def __init__(self, creds: Any = None, batch: bool = True) -> None:
        import asyncio
        import threading

        self.files: dict[tuple[str, str], list[str]] = {}
        self.failures: list[Any] = []  # grpc.StatusCode to answer the next calls with
        self.calls: dict[str, int] = {"Log": 0, "LogBatch": 0, "LogStream": 0}
        self.batch = batch
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="memory-log-server", daemon=True)
        self._thread.start()
        self.port: int = asyncio.run_coroutine_threadsafe(self._start(creds), self._loop).result(10)
        self.target = f"127.0.0.1:{self.port}"

    async def _start(self, creds: Any) -> int:
        import grpc

        from logstream._proto import logstream_pb2 as pb
        from logstream._proto import logstream_pb2_grpc as pb_grpc
        from logstream.node.net import SERVER_OPTIONS
        from logstream.node.tls import add_port

        store = self

        class Servicer(pb_grpc.LogStreamerServicer):
            async def Log(self, request: Any, context: Any) -> Any:
                await store._check("Log", context, request.path, request.filename)
                store._append(request.path, request.filename, [request.line.rstrip("\n")])
                return pb.LogResponse(res="Success")

            async def LogBatch(self, request: Any, context: Any) -> Any:
                if not store.batch:
                    with store._lock:
                        store.calls["LogBatch"] += 1
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
                for chunk in request.chunks:
                    await store._check("LogBatch", context, chunk.path, chunk.filename)
                lines = bytes_ = 0
                for chunk in request.chunks:
                    data = chunk.data if chunk.data.endswith(b"\n") else chunk.data + b"\n"
                    parts = data.decode().split("\n")[:-1]
                    store._append(chunk.path, chunk.filename, parts)
                    lines, bytes_ = lines + len(parts), bytes_ + len(data)
                return pb.LogBatchResponse(lines=lines, bytes=bytes_)

        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_LogStreamerServicer_to_server(Servicer(), self._server)  # type: ignore[no-untyped-call]
        port = add_port(self._server, "127.0.0.1:0", creds)
        await self._server.start()
        return port

    async def _check(self, method: str, context: Any, path: str, filename: str) -> None:
        import grpc

        with self._lock:
            self.calls[method] += 1
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            await context.abort(failure, f"injected {failure.name}")
        if not filename or "/" in filename:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad filename {filename!r}")
        if ".." in path.split("/"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"path {path!r} has a '..' segment")

    def _append(self, path: str, filename: str, lines: list[str]) -> None:
        with self._lock:
            self.files.setdefault((path, filename), []).extend(lines)

    def lines(self, path: str, filename: str) -> list[str]:
        with self._lock:
            return list(self.files.get((path, filename), []))

    def fail(self, *codes: Any) -> None:
        with self._lock:
            self.failures.extend(codes)

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def memory_server() -> Iterator[MemoryLogServer]:
    server = MemoryLogServer()
    yield server
    server.close()


@pytest.fixture
def memory_server_factory() -> Iterator[Callable[..., MemoryLogServer]]:
    """Start more servers (TLS: pass `creds`; a Go-original-like one: `batch=False`); all closed after."""
    started: list[MemoryLogServer] = []

    def start(creds: Any = None, batch: bool = True) -> MemoryLogServer:
        started.append(MemoryLogServer(creds, batch))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """An application's logger that reaches only the handlers a test adds; they are closed after."""
    logger = logging.getLogger("tests.app")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()


@pytest.fixture
def down_port() -> Iterator[int]:
    """A port where connections are refused for the whole test (held, so nothing else listens there)."""
    from netports import RefusingPort

    with RefusingPort() as port:
        yield port
