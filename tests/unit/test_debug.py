"""The debug server, for real on 127.0.0.1:0: every page answers, stacks show threads and asyncio
tasks even when the loop is stuck, the profile finds the hot function, bad queries get 400."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from logstream.node import debug, introspect
from logstream.node.net import ListenError


def _get(url: str, timeout_s: float = 10) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def server() -> Iterator[debug.DebugServer]:
    with debug.start_debug_server("127.0.0.1", 0, "test-node") as running:
        yield running


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _thread(target: Callable[[threading.Event], None], stop: threading.Event, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread


def idle_marker_function(stop: threading.Event) -> None:
    stop.wait(30)


def burn_cpu_marker_function(stop: threading.Event) -> None:
    total = 0
    while not stop.is_set():
        for n in range(2000):
            total += n * n


def test_index_and_healthz(server: debug.DebugServer) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    status, kind, body = _get(server.url + "/")
    assert status == 200 and kind.startswith("text/html")
    for path in ("/metrics", "/debug/stacks", "/debug/profile", "/healthz"):
        assert f'href="{path}' in body
    assert "test-node" in body
    assert _get(server.url + "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")


def test_metrics_include_process_and_gc_metrics(server: debug.DebugServer) -> None:
    status, kind, body = _get(server.url + "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=")
    assert re.search(r"^process_cpu_seconds_total \d", body, re.M)
    assert "python_gc_objects_collected_total" in body


def test_unknown_pages_and_bad_queries(server: debug.DebugServer) -> None:
    status, _, body = _get(server.url + "/nope")
    assert status == 404 and body == "no such page: /nope (see /)\n"
    for query, reason in [
        ("seconds=abc", "seconds='abc' is not a number"),
        ("seconds=0", "seconds=0 is out of range (0 < seconds <= 300)"),
        ("seconds=301", "seconds=301 is out of range"),
        ("seconds=nan", "out of range"),
        ("format=svg", "format='svg': use text or collapsed"),
        ("mode=gpu", "mode='gpu': use cpu or wall"),
        ("top=0", "top='0'"),
        ("secs=1", "unknown parameter 'secs'"),
        ("seconds=1&seconds=2", "seconds given 2 times"),
    ]:
        status, _, body = _get(f"{server.url}/debug/profile?{query}")
        assert status == 400, query
        assert reason in body and body.count("\n") == 1, (query, body)
    status, _, body = _get(server.url + "/healthz?x=1")
    assert status == 400 and "unknown parameter 'x'" in body


def test_stacks_show_threads_and_tasks_of_a_stuck_loop(server: debug.DebugServer, stop: threading.Event) -> None:
    _thread(idle_marker_function, stop, "idle-marker-thread")
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="loop-thread", daemon=True)
    loop_thread.start()
    started, released = threading.Event(), threading.Event()

    async def inner_await_marker() -> None:
        await asyncio.sleep(60)

    async def outer_task_marker() -> None:
        await inner_await_marker()

    async def stuck_loop_marker() -> None:
        started.set()
        released.wait(30)  # blocks the whole event loop on purpose

    with debug.start_debug_server("127.0.0.1", 0, "n1", loop=loop) as stuck:
        try:
            waiting = asyncio.run_coroutine_threadsafe(outer_task_marker(), loop)
            time.sleep(0.05)
            blocker = asyncio.run_coroutine_threadsafe(stuck_loop_marker(), loop)
            assert started.wait(5)
            status, _, body = _get(stuck.url + "/debug/stacks", timeout_s=5)
        finally:
            released.set()
            blocker.result(5)
            waiting.cancel()
            loop.call_soon_threadsafe(loop.stop)
            loop_thread.join(5)
            loop.close()
    assert status == 200
    assert "'idle-marker-thread' daemon" in body and "idle_marker_function" in body
    assert "'loop-thread'" in body and "stuck_loop_marker" in body
    assert re.search(r"asyncio tasks \(loop running: True\)", body)
    task_section = body[body.index("asyncio tasks"):]
    # the awaited chain, outermost first, down to the sleep's future
    assert task_section.index("outer_task_marker") < task_section.index("inner_await_marker")
    assert "awaiting <Future" in task_section


def test_stacks_without_a_loop(server: debug.DebugServer) -> None:
    status, _, body = _get(server.url + "/debug/stacks")
    assert status == 200 and "MainThread" in body and "no event loop was given" in body


def test_profile_finds_the_busy_function_and_skips_idle_threads(server: debug.DebugServer, stop: threading.Event) -> None:
    _thread(burn_cpu_marker_function, stop, "burner")
    _thread(idle_marker_function, stop, "idler")
    status, _, body = _get(server.url + "/debug/profile?seconds=0.6")
    assert status == 200
    assert "cpu profile at 100 Hz" in body
    rounds = int(re.search(r"in (\d+) rounds", body).group(1))  # type: ignore[union-attr]
    assert 10 <= rounds <= 70  # ~60 at 100 Hz; slack for a loaded machine
    top_rows = body.split("function\n", 1)[1]
    assert "burn_cpu_marker_function" in top_rows
    assert "idle_marker_function" not in top_rows

    status, _, body = _get(server.url + "/debug/profile?seconds=0.4&format=collapsed&mode=wall")
    assert status == 200
    lines = body.splitlines()
    assert lines and all(re.fullmatch(r"\S+ \d+", line) for line in lines)
    assert any(line.startswith("thread:burner;") and "burn_cpu_marker_function" in line for line in lines)
    assert any(line.startswith("thread:idler;") and "idle_marker_function" in line for line in lines)


def test_one_profile_at_a_time_and_close_ends_it(stop: threading.Event) -> None:
    server = debug.start_debug_server("127.0.0.1", 0, "n1")
    results: list[tuple[int, str, str]] = []
    first = threading.Thread(target=lambda: results.append(_get(server.url + "/debug/profile?seconds=60")))
    first.start()
    deadline = time.monotonic() + 10  # until the first profile runs (polled: no fixed sleep under load)
    while not server._httpd.profiling.locked():
        assert time.monotonic() < deadline, "the first profile never started"
        time.sleep(0.01)
    status, _, body = _get(server.url + "/debug/profile?seconds=1")
    assert status == 409 and "already running" in body
    began = time.monotonic()
    server.close()
    server.close()  # idempotent
    first.join(10)
    assert time.monotonic() - began < 5
    assert results and results[0][0] == 200


def test_a_port_in_use_is_a_listen_error(server: debug.DebugServer) -> None:
    with pytest.raises(ListenError, match=rf"^-pport {server.port}: address in use$"):
        debug.start_debug_server("127.0.0.1", server.port, "n2")


def test_profile_tables_are_computed_from_stacks() -> None:
    profile = introspect.Profile(samples=4, duration_s=0.04)
    for stack in [("t", "main", "work"), ("t", "main", "work"), ("t", "main"), ("t", "main", "main")]:
        profile.add(stack)
    flat, cumulative = profile.flat_and_cumulative()
    assert flat == {"work": 2, "main": 2}
    assert cumulative == {"t": 4, "main": 4, "work": 2}  # recursion counted once per sample
    assert profile.collapsed() == "t;main 1\nt;main;main 1\nt;main;work 2\n"
    rows = profile.top(10, "title").splitlines()
    assert rows[0] == "title" and rows[1].startswith("4 stack samples in 4 rounds")
    assert rows[4].split() == ["2", "50.0%", "50.0%", "4", "100.0%", "main"]
    assert rows[5].split() == ["2", "50.0%", "100.0%", "2", "50.0%", "work"]


def test_healthz_says_not_serving_and_why_while_background_work_is_down() -> None:
    problem: list[str] = []
    with debug.start_debug_server("127.0.0.1", 0, "test-node",
                                  health=lambda: problem[0] if problem else None) as running:
        assert _get(running.url + "/healthz")[0] == 200
        problem.append("background task down: health-loop")
        status, _kind, body = _get(running.url + "/healthz")
        assert status == 503 and body == "not serving: background task down: health-loop\n"


def _request(method: str, url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def test_readyz_and_head_on_the_probe_pages() -> None:
    ready: list[str | None] = ["no lease yet"]
    with debug.start_debug_server("127.0.0.1", 0, "n", health=lambda: None, ready=lambda: ready[0]) as server:
        assert _request("GET", server.url + "/readyz") == (503, "not ready: no lease yet\n")
        assert _request("HEAD", server.url + "/readyz") == (503, "")
        assert _request("HEAD", server.url + "/healthz") == (200, "")
        ready[0] = None
        assert _request("GET", server.url + "/readyz") == (200, "ok\n")
        assert _request("HEAD", server.url + "/readyz") == (200, "")
        assert _request("HEAD", server.url + "/metrics")[0] == 200
        # HEAD never starts a profile.
        assert _request("HEAD", server.url + "/debug/profile?seconds=5") == (405, "")


def test_the_metrics_server_serves_metrics_and_probes_only() -> None:
    with debug.start_metrics_server("127.0.0.1:0", "n", lambda: "task down", lambda: "task down") as server:
        assert server.port > 0
        assert _request("GET", server.url + "/healthz") == (503, "not serving: task down\n")
        assert _request("GET", server.url + "/readyz") == (503, "not ready: task down\n")
        status, body = _request("GET", server.url + "/metrics")
        assert status == 200 and "process_cpu_seconds_total" in body
        for page in ("/debug/stacks", "/debug/profile", "/debug/pprof/profile"):
            assert _request("GET", server.url + page)[0] == 404
        status, index = _request("GET", server.url + "/")
        assert status == 200 and "/readyz" in index and "/debug" not in index
        with pytest.raises(ListenError, match=rf"^-metrics 127.0.0.1:{server.port}: address in use$"):
            debug.start_metrics_server(f"127.0.0.1:{server.port}", "n2", lambda: None, lambda: None)
