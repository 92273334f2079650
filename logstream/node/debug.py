"""The node's HTTP servers: -pprof's debug server (/metrics, /healthz, /readyz, /debug/stacks,
/debug/profile) and -metrics's (/metrics, /healthz, /readyz only: a scraper or a probe gets no profiling).

Each runs in its own daemon threads, not on the event loop, so it still answers when the loop is
stuck; that is exactly when /debug/stacks is needed.
"""

from __future__ import annotations

import asyncio
import errno
import html
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from logstream.node.introspect import (
    PROFILE_DEFAULT_S,
    PROFILE_HZ,
    PROFILE_MAX_S,
    PROFILE_TOP_DEFAULT,
    format_task_stacks,
    format_thread_stacks,
    sample_profile,
)
from logstream.node.address import parse_listen_host_port
from logstream.node.net import ListenError

logger = logging.getLogger(__name__)

ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("/metrics", "Prometheus metrics (process, Python GC and logstream counters)"),
    ("/debug/stacks", "the stack of every thread and of every asyncio task"),
    ("/debug/profile?seconds=30", "a sampling CPU profile of all threads, as a top of functions "
                                  "(&format=collapsed: folded stacks for flamegraph tools; "
                                  "&mode=wall: count waiting threads too; &top=N rows)"),
    ("/healthz", "live: ok while the node and every background task of it runs (503 and the reason otherwise)"),
    ("/readyz", "ready: ok while the node can take writes now (503 and the reason otherwise)"),
)
METRICS_ENDPOINTS: tuple[tuple[str, str], ...] = tuple(
    (path, text) for path, text in ENDPOINTS if path in ("/metrics", "/healthz", "/readyz"))


class BadQuery(Exception):
    """A query the debug server cannot serve; the message is the one-line reason."""


# ---------------------------------------------------------------- the HTTP server

def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise BadQuery(f"{name} given {len(values)} times")
    return values[0]


def parse_query(raw: str, allowed: set[str]) -> dict[str, list[str]]:
    try:
        query = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=20)
    except ValueError as exc:
        raise BadQuery(f"bad query string: {exc}") from None
    unknown = sorted(set(query) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise BadQuery(f"unknown parameter {unknown[0]!r} (known: {known})")
    return query


@dataclass(frozen=True)
class ProfileRequest:
    seconds: float
    format: str
    mode: str
    top: int


def parse_profile_query(raw: str) -> ProfileRequest:
    """Validate /debug/profile's query: seconds (0 < s <= 300), format (text|collapsed), mode (cpu|wall), top."""
    query = parse_query(raw, {"seconds", "format", "mode", "top"})
    seconds_text = _one(query, "seconds")
    seconds = PROFILE_DEFAULT_S
    if seconds_text is not None:
        try:
            seconds = float(seconds_text)
        except ValueError:
            raise BadQuery(f"seconds={seconds_text!r} is not a number") from None
        if not math.isfinite(seconds) or not 0 < seconds <= PROFILE_MAX_S:
            raise BadQuery(f"seconds={seconds_text} is out of range (0 < seconds <= {PROFILE_MAX_S:g})")
    fmt = _one(query, "format") or "text"
    if fmt not in ("text", "collapsed"):
        raise BadQuery(f"format={fmt!r}: use text or collapsed")
    mode = _one(query, "mode") or "cpu"
    if mode not in ("cpu", "wall"):
        raise BadQuery(f"mode={mode!r}: use cpu or wall")
    top_text = _one(query, "top")
    top = PROFILE_TOP_DEFAULT
    if top_text is not None:
        if not top_text.isdigit() or not 1 <= int(top_text) <= 10_000:
            raise BadQuery(f"top={top_text!r}: use a whole number from 1 to 10000")
        top = int(top_text)
    return ProfileRequest(seconds, fmt, mode, top)


class _Handler(BaseHTTPRequestHandler):
    server: _DebugHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "logstream-debug"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        url = urlsplit(self.path)
        route = self.server.routes.get(url.path.rstrip("/") or "/")
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, f"no such page: {url.path} (see /)\n")
            return
        try:
            status, content_type, body = route(self.server, url.query)
        except BadQuery as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"{exc}\n")
            return
        except Exception:
            logger.exception("debug server: %s failed", url.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the node's log)\n")
            return
        self._send(status, body, content_type)

    def do_HEAD(self) -> None:  # noqa: N802
        # Probes (and curl -I) may use HEAD on the cheap pages; a profile is never run for one.
        if (urlsplit(self.path).path.rstrip("/") or "/") in HEAD_PAGES:
            self.do_GET()  # _send leaves the body out
        else:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, "use GET\n")

    def _send(self, status: HTTPStatus, body: str | bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("debug server: %s %s", self.address_string(), format % args)


Route = Callable[["_DebugHTTPServer", str], tuple[HTTPStatus, str, "str | bytes"]]
# None when the node is healthy, else the reason (called from the server's threads).
Health = Callable[[], "str | None"]


def _index(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    parse_query(raw, set())
    items = "".join(f'<li><a href="{html.escape(path)}">{html.escape(path)}</a>: {html.escape(text)}</li>\n'
                    for path, text in server.endpoints)
    title = html.escape(f"logstream {server.node} (pid {os.getpid()})")
    page = f"<!doctype html>\n<title>{title}</title>\n<h1>{title}</h1>\n<ul>\n{items}</ul>\n"
    return HTTPStatus.OK, "text/html; charset=utf-8", page


def _probe(raw: str, problem: str | None, failing: str) -> tuple[HTTPStatus, str, str | bytes]:
    """A probe's answer: 200 "ok", or 503 "<failing>: <problem>"."""
    parse_query(raw, set())
    if problem is not None:
        return HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", f"{failing}: {problem}\n"
    return HTTPStatus.OK, "text/plain; charset=utf-8", "ok\n"


def _healthz(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    return _probe(raw, server.health(), "not serving")


def _readyz(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    return _probe(raw, server.ready(), "not ready")


def _metrics(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    parse_query(raw, {"name[]"})  # Prometheus may send name[] filters; all are served
    return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)


def _stacks(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    parse_query(raw, set())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = (f"logstream {server.node} pid {os.getpid()} at {stamp}\n\n"
            f"{format_thread_stacks()}\n\n{format_task_stacks(server.loop)}\n")
    return HTTPStatus.OK, "text/plain; charset=utf-8", text


def _profile(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    request = parse_profile_query(raw)
    if not server.profiling.acquire(blocking=False):
        return HTTPStatus.CONFLICT, "text/plain; charset=utf-8", "a profile is already running; try again later\n"
    try:
        logger.info("debug server: profiling for %gs (mode %s)", request.seconds, request.mode)
        profile = sample_profile(request.seconds, request.mode, server.stopping)
    finally:
        server.profiling.release()
    if request.format == "collapsed":
        return HTTPStatus.OK, "text/plain; charset=utf-8", profile.collapsed()
    title = f"logstream {server.node} pid {os.getpid()}: {request.mode} profile at {PROFILE_HZ} Hz"
    return HTTPStatus.OK, "text/plain; charset=utf-8", profile.top(request.top, title)


ROUTES: dict[str, Route] = {
    "/": _index,
    "/healthz": _healthz,
    "/readyz": _readyz,
    "/metrics": _metrics,
    "/debug/stacks": _stacks,
    "/debug/profile": _profile,
    "/debug/pprof/profile": _profile,  # the path Go users type
}
METRICS_ROUTES: dict[str, Route] = {path: ROUTES[path] for path in ("/", "/healthz", "/readyz", "/metrics")}
HEAD_PAGES = frozenset(METRICS_ROUTES)


class _DebugHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow profile download must never keep the process alive

    def __init__(self, address: tuple[str, int], node: str, loop: asyncio.AbstractEventLoop | None,
                 health: Health = lambda: None, ready: Health | None = None,
                 routes: Mapping[str, Route] = ROUTES,
                 endpoints: tuple[tuple[str, str], ...] = ENDPOINTS) -> None:
        self.node = node
        self.loop = loop
        self.health = health
        self.ready = health if ready is None else ready
        self.routes = routes
        self.endpoints = endpoints
        self.profiling = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class _DebugHTTPServer6(_DebugHTTPServer):
    address_family = socket.AF_INET6


class DebugServer:
    """A running debug server; `close()` stops it (idempotent)."""

    def __init__(self, httpd: _DebugHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._closed = False
        self.host: str = str(httpd.server_address[0])
        self.port: int = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.stopping.set()  # ends a running profile early
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DebugServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def start_debug_server(host: str, port: int, node: str, loop: asyncio.AbstractEventLoop | None = None,
                       health: Health = lambda: None, ready: Health | None = None) -> DebugServer:
    """Listen on host:port (0: any free port) and serve every page in a daemon thread.

    `loop` is the event loop whose tasks /debug/stacks shows (default: the running loop, if any);
    `health` says what /healthz answers (e.g. `NodeHealth.live`), `ready` what /readyz does
    (default: the same as /healthz).
    """
    server = _serve(host, port, f"-pport {port}", f"-phost {host} -pport {port}",
                    lambda address, cls: cls(address, node, loop or _current_loop(), health, ready))
    logger.info("debug server listening on %s", server.url)
    return server


def start_metrics_server(address: str, node: str, health: Health, ready: Health) -> DebugServer:
    """-metrics ADDR: /metrics, /healthz and /readyz only, on host:port (port 0: any free port)."""
    bind = parse_listen_host_port(address)
    server = _serve(bind.host, bind.port, f"-metrics {address}", f"-metrics {address}",
                    lambda bind, cls: cls(bind, node, None, health, ready, METRICS_ROUTES, METRICS_ENDPOINTS))
    # Not "listening on": that phrase announces the gRPC port (tests and tools look for it).
    logger.info("metrics server at %s (/metrics, /healthz, /readyz)", server.url)
    return server


def _serve(host: str, port: int, in_use_flags: str, flags: str,
           make: Callable[[tuple[str, int], type[_DebugHTTPServer]], _DebugHTTPServer]) -> DebugServer:
    server_class = _DebugHTTPServer6 if ":" in host.strip("[]") else _DebugHTTPServer
    try:
        httpd = make((host.strip("[]"), port), server_class)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"{in_use_flags}: address in use") from None
        raise ListenError(f"{flags}: cannot listen: {exc.strerror or exc}") from None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"debug-http-{httpd.server_address[1]}", daemon=True)
    thread.start()
    return DebugServer(httpd, thread)
