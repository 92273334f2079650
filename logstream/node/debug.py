"""The -pprof debug server: /metrics, /debug/stacks, /debug/profile and /healthz over HTTP.

It runs in its own daemon threads, not on the event loop, so it still answers when the loop is
stuck; that is exactly when /debug/stacks is needed.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import html
import logging
import math
import os
import socket
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from logstream.config.flags import UsageError

logger = logging.getLogger(__name__)

PROFILE_HZ = 100
PROFILE_DEFAULT_S = 30.0
PROFILE_MAX_S = 300.0
PROFILE_TOP_DEFAULT = 40
# A thread counts as on-CPU in a sample when it used at least this much CPU since the previous one.
_ON_CPU_MIN_S = 0.0005

ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("/metrics", "Prometheus metrics (process, Python GC and logstream counters)"),
    ("/debug/stacks", "the stack of every thread and of every asyncio task"),
    ("/debug/profile?seconds=30", "a sampling CPU profile of all threads, as a top of functions "
                                  "(&format=collapsed: folded stacks for flamegraph tools; "
                                  "&mode=wall: count waiting threads too; &top=N rows)"),
    ("/healthz", "ok while every background task of the node runs (503 and the reason otherwise)"),
)


class BadQuery(Exception):
    """A query the debug server cannot serve; the message is the one-line reason."""


# ---------------------------------------------------------------- profiles: pure aggregation

Stack = tuple[str, ...]  # function names, outermost first


@dataclass
class Profile:
    """Counts of sampled stacks; `top` and `collapsed` render them."""

    stacks: collections.Counter[Stack] = field(default_factory=collections.Counter)
    samples: int = 0  # sampling rounds taken
    duration_s: float = 0.0

    def add(self, stack: Stack) -> None:
        if stack:
            self.stacks[stack] += 1

    def flat_and_cumulative(self) -> tuple[collections.Counter[str], collections.Counter[str]]:
        """Samples with each function on top (flat) and anywhere on the stack (cumulative, once per stack)."""
        flat: collections.Counter[str] = collections.Counter()
        cumulative: collections.Counter[str] = collections.Counter()
        for stack, count in self.stacks.items():
            flat[stack[-1]] += count
            for name in set(stack):  # recursion counts once per sample
                cumulative[name] += count
        return flat, cumulative

    def top(self, rows: int, title: str) -> str:
        """A pprof-style table sorted by flat, then cumulative samples."""
        total = sum(self.stacks.values())
        flat, cumulative = self.flat_and_cumulative()
        lines = [title, f"{total} stack samples in {self.samples} rounds over {self.duration_s:.2f}s", ""]
        lines.append(f"{'flat':>8} {'flat%':>6} {'sum%':>6} {'cum':>8} {'cum%':>6}  function")
        running = 0
        order = sorted(cumulative, key=lambda name: (-flat[name], -cumulative[name], name))
        for name in order[:rows]:
            running += flat[name]
            lines.append(f"{flat[name]:>8} {_pct(flat[name], total):>6} {_pct(running, total):>6} "
                         f"{cumulative[name]:>8} {_pct(cumulative[name], total):>6}  {name}")
        if not total:
            lines.append("(no samples: nothing ran on a CPU; try &mode=wall)")
        return "\n".join(lines) + "\n"

    def collapsed(self) -> str:
        """Folded stacks, `outer;inner;leaf COUNT` per line (Brendan Gregg's flamegraph.pl, speedscope)."""
        return "".join(f"{';'.join(stack)} {count}\n" for stack, count in sorted(self.stacks.items()))


def _pct(part: int, total: int) -> str:
    return f"{100.0 * part / total:.1f}%" if total else "-"


def frame_name(frame: types.FrameType) -> str:
    """`module.qualname:firstline`, safe for folded stacks (no spaces or semicolons)."""
    code = frame.f_code
    module = frame.f_globals.get("__name__") or os.path.basename(code.co_filename)
    name = f"{module}.{code.co_qualname}:{code.co_firstlineno}"
    return name.replace(" ", "_").replace(";", ":")


def frame_stack(frame: types.FrameType | None, thread_name: str) -> Stack:
    names: list[str] = []
    while frame is not None:
        names.append(frame_name(frame))
        frame = frame.f_back
    names.append(f"thread:{thread_name}".replace(" ", "_").replace(";", ":"))
    names.reverse()
    return tuple(names)


# ---------------------------------------------------------------- profiles: sampling

class _CpuClock:
    """CPU seconds each thread used since the previous call (Linux); None where the platform cannot
    tell. A thread seen for the first time reports 0.0."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}

    def used_since_last(self, ident: int) -> float | None:
        try:
            now = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (AttributeError, OSError):  # no per-thread clocks here, or the thread just ended
            return None
        before = self.last.get(ident, now)
        self.last[ident] = now
        return now - before


def sample_profile(seconds: float, mode: str, stop: threading.Event,
                   clock: Callable[[], float] = time.monotonic) -> Profile:
    """Sample every other thread's stack at PROFILE_HZ for `seconds` (or until `stop`).

    mode "cpu" counts a thread only when it used CPU since the previous sample (like Go's CPU
    profile; falls back to wall where per-thread CPU clocks are missing); "wall" counts every thread.
    """
    profile, cpu = Profile(), _CpuClock()
    me = threading.get_ident()
    interval_s = 1.0 / PROFILE_HZ
    start = clock()
    deadline = start + seconds
    next_at = start
    while not stop.is_set():
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            if mode == "cpu":
                used = cpu.used_since_last(ident)
                if used is not None and used < _ON_CPU_MIN_S:
                    continue
            profile.add(frame_stack(frame, names.get(ident, str(ident))))
        profile.samples += 1
        next_at += interval_s
        now = clock()
        if now >= deadline:
            break
        stop.wait(max(0.0, min(next_at, deadline) - now))
    profile.duration_s = clock() - start
    return profile


# ---------------------------------------------------------------- stacks

def _thread_label(ident: int, threads: Mapping[int | None, threading.Thread]) -> str:
    thread = threads.get(ident)
    if thread is None:
        return f"thread {ident}"
    flags = " daemon" if thread.daemon else ""
    return f"thread {ident} {thread.name!r}{flags}"


def format_thread_stacks() -> str:
    threads = {thread.ident: thread for thread in threading.enumerate()}
    frames = sys._current_frames()
    parts = [f"=== {len(frames)} threads"]
    for ident, frame in sorted(frames.items()):
        parts.append(f"\n--- {_thread_label(ident, threads)}\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


def await_chain(awaitable: Any) -> tuple[list[types.FrameType], Any]:
    """The frames of a coroutine and everything it awaits, outermost first, and what the innermost
    one waits on (a Future, or None)."""
    frames: list[types.FrameType] = []
    current, seen = awaitable, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None) or getattr(current, "ag_frame", None)
        if frame is None and not hasattr(current, "cr_await") and not hasattr(current, "gi_yieldfrom"):
            return frames, current  # a Future or another awaitable object
        if frame is not None:
            frames.append(frame)
        current = (getattr(current, "cr_await", None) or getattr(current, "gi_yieldfrom", None)
                   or getattr(current, "ag_await", None))
    return frames, None


def format_task(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    frames, waiting_on = await_chain(coro)
    header = f"--- task {task.get_name()!r} {getattr(coro, '__qualname__', type(coro).__name__)}"
    summary = traceback.StackSummary.extract(((frame, frame.f_lineno) for frame in frames), lookup_lines=True)
    body = "".join(summary.format()) or "  (no frames: not started or finished)\n"
    # The innermost awaitable is often a C FutureIter that hides its future; the task knows it.
    waiting_on = getattr(task, "_fut_waiter", None) or waiting_on
    if waiting_on is not None:
        body += f"  awaiting {_short_repr(waiting_on)}\n"
    return f"{header}\n{body}"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def format_task_stacks(loop: asyncio.AbstractEventLoop | None) -> str:
    if loop is None:
        return "=== asyncio: no event loop was given to the debug server"
    if loop.is_closed():
        return "=== asyncio: the event loop is closed"
    # all_tasks is read from this (non-loop) thread: it copies the task set and retries when the
    # set changes meanwhile; a task's frames may move while we read them, which is fine for a dump.
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
    parts = [f"=== {len(tasks)} asyncio tasks (loop running: {loop.is_running()})"]
    for task in tasks:
        try:
            parts.append(format_task(task))
        except Exception as exc:  # a task finishing under our feet must not break the dump
            parts.append(f"--- task {task.get_name()!r}: cannot read its stack: {exc}\n")
    return "\n".join(parts)


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
                    for path, text in ENDPOINTS)
    title = html.escape(f"logstream {server.node} (pid {os.getpid()})")
    page = f"<!doctype html>\n<title>{title}</title>\n<h1>{title}</h1>\n<ul>\n{items}</ul>\n"
    return HTTPStatus.OK, "text/html; charset=utf-8", page


def _healthz(server: _DebugHTTPServer, raw: str) -> tuple[HTTPStatus, str, str | bytes]:
    parse_query(raw, set())
    problem = server.health()
    if problem is not None:
        return HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", f"not serving: {problem}\n"
    return HTTPStatus.OK, "text/plain; charset=utf-8", "ok\n"


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
    "/metrics": _metrics,
    "/debug/stacks": _stacks,
    "/debug/profile": _profile,
    "/debug/pprof/profile": _profile,  # the path Go users type
}


class _DebugHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow profile download must never keep the process alive

    def __init__(self, address: tuple[str, int], node: str, loop: asyncio.AbstractEventLoop | None,
                 health: Health = lambda: None) -> None:
        self.node = node
        self.loop = loop
        self.health = health
        self.routes = ROUTES
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


def start_debug_server(host: str, port: int, node: str,
                       loop: asyncio.AbstractEventLoop | None = None, health: Health = lambda: None) -> DebugServer:
    """Listen on host:port (0: any free port) and serve in a daemon thread.

    `loop` is the event loop whose tasks /debug/stacks shows (default: the running loop, if any);
    `health` says what /healthz answers (e.g. `TaskSupervisor.problem`).
    """
    server_class = _DebugHTTPServer6 if ":" in host.strip("[]") else _DebugHTTPServer
    try:
        httpd = server_class((host.strip("[]"), port), node, loop or _current_loop(), health)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"-pport {port}: address in use") from None
        raise UsageError(f"-phost {host} -pport {port}: cannot listen: {exc.strerror or exc}") from None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"debug-http-{httpd.server_address[1]}", daemon=True)
    thread.start()
    server = DebugServer(httpd, thread)
    logger.info("debug server listening on %s", server.url)
    return server
