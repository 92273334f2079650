"""LogstreamHandler against a real in-memory LogStreamer: records keep their order, wait out failures
instead of being dropped after a few tries, a refused record is isolated, `emit` never blocks, and
`flush`/`close` are bounded and honest about what is left."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from logstream.handler import LogstreamHandler
from logstream.handler_policy import TRUNCATED_MARKER

if TYPE_CHECKING:
    from tests.conftest import MemoryLogServer






def test_handler_ships_every_record_in_order(memory_server: MemoryLogServer, app_logger: logging.Logger) -> None:
    handler = LogstreamHandler(memory_server.target, "apps", "web", batch_lines=100, flush_interval_s=0.05)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    app_logger.addHandler(handler)
    for n in range(450):
        app_logger.info("request %d", n)
    assert handler.flush(5) is True
    assert handler.pending() == 0 and handler.sent == 450
    app_logger.warning("last one")
    handler.close()
    assert memory_server.lines("apps", "web") == [f"INFO request {n}" for n in range(450)] + ["WARNING last one"]
    assert (handler.sent, handler.dropped, handler.left_at_close) == (451, 0, 0)
    assert 5 <= memory_server.calls["LogBatch"] <= 60  # batched, not one call per record


def test_handler_sends_a_lone_record_after_the_flush_interval(memory_server: MemoryLogServer,
                                                             app_logger: logging.Logger) -> None:
    handler = LogstreamHandler(memory_server.target, "apps", "quiet", flush_interval_s=0.05)
    app_logger.addHandler(handler)
    app_logger.info("alone")
    deadline = time.monotonic() + 5
    while not memory_server.lines("apps", "quiet") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert memory_server.lines("apps", "quiet") == ["alone"]


def test_failures_are_retried_past_any_small_count_and_order_is_kept(memory_server: MemoryLogServer,
                                                                     app_logger: logging.Logger) -> None:
    # Twelve failures in a row (the old handler gave up after 3), of the codes an outage produces.
    memory_server.fail(*[grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                         grpc.StatusCode.RESOURCE_EXHAUSTED] * 4)
    handler = LogstreamHandler(memory_server.target, "apps", "blip", batch_lines=7, flush_interval_s=0.01,
                               first_backoff_s=0.005, max_backoff_s=0.02)
    app_logger.addHandler(handler)
    for n in range(40):
        app_logger.info("r%d", n)
    assert handler.flush(10) is True
    assert memory_server.lines("apps", "blip") == [f"r{n}" for n in range(40)]
    assert (handler.sent, handler.dropped) == (40, 0)


def test_a_refused_record_is_isolated(memory_server: MemoryLogServer, app_logger: logging.Logger,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    handler = LogstreamHandler(memory_server.target, "apps", "mixed", batch_lines=50, flush_interval_s=0.01)
    app_logger.addHandler(handler)
    for n in range(20):
        app_logger.info("good %d", n)
    assert handler.flush(5)
    # The server refuses the next call (as a streamer refuses a line over its -max-line): only one
    # record of the next batch may be lost, whichever the halving lands on last.
    memory_server.fail(grpc.StatusCode.INVALID_ARGUMENT)
    for n in range(20, 30):
        app_logger.info("good %d", n)
    assert handler.flush(5)
    lines = memory_server.lines("apps", "mixed")
    assert lines == [f"good {n}" for n in range(20)] + [f"good {n}" for n in range(20, 30)]
    # the refused call carried all ten; its halves were each accepted: nothing lost, nothing doubled
    assert (handler.sent, handler.rejected, handler.dropped) == (30, 0, 0)
    assert capsys.readouterr().err == ""


def test_a_bad_target_rejects_each_record_once_and_warns_once(memory_server: MemoryLogServer,
                                                              app_logger: logging.Logger,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    handler = LogstreamHandler(memory_server.target, "../escape", "x", batch_lines=8, flush_interval_s=0.01)
    app_logger.addHandler(handler)
    for n in range(8):
        app_logger.info("n%d", n)
    assert handler.flush(5)
    assert (handler.sent, handler.rejected, handler.dropped) == (0, 8, 8)
    assert memory_server.calls["LogBatch"] == 15  # 8 records halved down to singles: 2 * 8 - 1 calls
    assert capsys.readouterr().err.count("logstream handler:") == 1


def test_oversize_records_are_dropped_or_truncated_before_sending(memory_server: MemoryLogServer,
                                                                  app_logger: logging.Logger,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    drop = LogstreamHandler(memory_server.target, "apps", "drop", max_line_bytes=100, flush_interval_s=0.01)
    cut = LogstreamHandler(memory_server.target, "apps", "cut", max_line_bytes=100, oversize="truncate",
                           flush_interval_s=0.01)
    for handler in (drop, cut):
        app_logger.addHandler(handler)
    app_logger.info("before")
    app_logger.info("é" * 300)  # 600 bytes
    app_logger.info("x" * 101)
    app_logger.info("after")
    assert drop.flush(5) and cut.flush(5)
    assert memory_server.lines("apps", "drop") == ["before", "after"]
    assert (drop.sent, drop.too_long, drop.dropped, drop.truncated) == (2, 2, 2, 0)
    got = memory_server.lines("apps", "cut")
    assert got[0] == "before" and got[3] == "after" and len(got) == 4
    marker = TRUNCATED_MARKER.decode()
    assert got[1] == "é" * ((100 - len(marker)) // 2) + marker  # cut on a character boundary
    assert got[2] == "x" * (100 - len(marker)) + marker
    assert (cut.sent, cut.dropped, cut.truncated) == (4, 0, 2)
    assert capsys.readouterr().err.count("logstream handler:") == 1  # the dropping handler's first drop


def test_escaped_newlines_keep_a_traceback_on_one_line(memory_server: MemoryLogServer,
                                                        app_logger: logging.Logger) -> None:
    handler = LogstreamHandler(memory_server.target, "apps", "one", newlines="escape", flush_interval_s=0.01)
    app_logger.addHandler(handler)
    try:
        raise ValueError("boom")
    except ValueError:
        app_logger.exception("failed")
    assert handler.flush(5)
    [line] = memory_server.lines("apps", "one")
    assert line.startswith("failed\\nTraceback (most recent call last):\\n") and line.endswith("ValueError: boom")


def test_the_buffer_overflows_with_a_counter_and_one_warning(app_logger: logging.Logger,
                                                             capsys: pytest.CaptureFixture[str],
                                                             down_port: int) -> None:
    handler = LogstreamHandler(f"127.0.0.1:{down_port}", "apps", "down", capacity=20, batch_lines=5,
                               flush_interval_s=0.05, timeout_s=1, close_timeout_s=0.5)
    app_logger.addHandler(handler)
    began = time.monotonic()
    for n in range(500):
        app_logger.error("lost %d", n)
    assert time.monotonic() - began < 1.0  # emit never waits for the network
    assert handler.flush(0.3) is False  # nothing can be delivered: flush says so after its timeout
    handler.close()
    assert time.monotonic() - began < 4
    assert handler.sent == 0 and handler.overflowed == 480 and handler.left_at_close == 20
    assert handler.dropped == 500
    err = capsys.readouterr().err
    # One line when the outage began (however many retries), one for the overflow, one at close.
    assert err.count("logstream handler:") == 3
    assert err.count("buffer full") == 1 and err.count("cannot deliver") == 1


def test_an_outage_is_said_once_and_not_at_all_when_logging_is_told_to_be_quiet(
        app_logger: logging.Logger, capsys: pytest.CaptureFixture[str], down_port: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for quiet in (False, True):
        monkeypatch.setattr(logging, "raiseExceptions", not quiet)  # handleError's convention
        handler = LogstreamHandler(f"127.0.0.1:{down_port}", "apps", "down", flush_interval_s=0.01,
                                   first_backoff_s=0.01, max_backoff_s=0.02, close_timeout_s=0.3)
        app_logger.addHandler(handler)
        app_logger.error("waits")
        deadline = time.monotonic() + 10
        while handler.retries < 5:  # several retries of the same outage
            assert time.monotonic() < deadline, "the sender never retried"
            time.sleep(0.01)
        handler.close()
        app_logger.removeHandler(handler)
        err = capsys.readouterr().err
        assert err.count("cannot deliver") == (0 if quiet else 1), err


def test_handler_counts_records_after_close(memory_server: MemoryLogServer) -> None:
    handler = LogstreamHandler(memory_server.target, "a", "b")
    handler.close()
    handler.close()
    handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "late", None, None))
    assert handler.dropped == 1 and memory_server.lines("a", "b") == []


def test_handler_close_gives_up_on_a_hung_cluster(app_logger: logging.Logger) -> None:
    # A listener that accepts connections and never speaks: every call would wait for its deadline.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        target = f"127.0.0.1:{hung.getsockname()[1]}"
        handler = LogstreamHandler(target, "a", "b", flush_interval_s=0.05, timeout_s=30, close_timeout_s=0.5)
        app_logger.addHandler(handler)
        for n in range(10):
            app_logger.info("stuck %d", n)
        deadline = time.monotonic() + 5  # until the sender is inside its call (polled: no fixed sleep)
        while not handler._calling.locked():
            assert time.monotonic() < deadline, "the sender never started its call"
            time.sleep(0.01)
        began = time.monotonic()
        handler.close()
        assert time.monotonic() - began < 3
    assert handler.sent == 0 and handler.dropped == 10 and handler.left_at_close == 10


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="oversize"):
        LogstreamHandler("127.0.0.1:1", "a", "b", oversize="cut")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="newlines"):
        LogstreamHandler("127.0.0.1:1", "a", "b", newlines="join")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        LogstreamHandler("127.0.0.1:1", "a", "b", capacity=0)


def test_import_logstream_stays_light_and_exports_the_clients() -> None:
    import subprocess
    import sys

    code = ("import sys, logstream; assert 'grpc' not in sys.modules, 'grpc imported'; "
            "from logstream import LogClient, LogstreamHandler, SyncLogClient; "
            "print(LogClient.__module__, SyncLogClient.__module__, LogstreamHandler.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "logstream.client logstream.client logstream.handler\n"), done.stderr
    import logstream

    with pytest.raises(AttributeError):
        logstream.NoSuchThing  # noqa: B018


def test_the_readme_dictconfig_example_works(memory_server: MemoryLogServer) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Python client and logging handler", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"127.0.0.1:8000"' in example
    root = logging.getLogger()
    assert "web" not in logging.Logger.manager.loggerDict  # else dictConfig would disable it
    saved = (root.level, list(root.handlers))
    disabled = {name: logger.disabled for name, logger in logging.Logger.manager.loggerDict.items()
                if isinstance(logger, logging.Logger)}
    try:
        exec(example.replace('"127.0.0.1:8000"', repr(memory_server.target)), {})  # noqa: S102
        [handler] = [h for h in root.handlers if isinstance(h, LogstreamHandler)]
        assert handler.flush(5) and handler.oversize == "truncate" and handler.capacity == 10000
        [line] = memory_server.lines("apps/web", "web")
        assert line.endswith(" INFO web started")
        handler.close()
    finally:
        for added in root.handlers:
            if added not in saved[1]:
                added.close()
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, was in disabled.items():  # dictConfig's disable_existing_loggers turned them off
            logging.getLogger(name).disabled = was


def test_multi_line_records_to_a_server_without_logbatch(memory_server_factory: Callable[..., MemoryLogServer],
                                                        app_logger: logging.Logger) -> None:
    server = memory_server_factory(batch=False)  # the Go original: one unary Log per line
    server.fail(grpc.StatusCode.UNAVAILABLE)
    handler = LogstreamHandler(server.target, "apps", "go", flush_interval_s=0.01, first_backoff_s=0.01)
    app_logger.addHandler(handler)
    app_logger.info("first\nsecond")
    app_logger.info("third")
    assert handler.flush(5)
    assert server.lines("apps", "go") == ["first", "second", "third"]
    assert (handler.sent, handler.dropped) == (2, 0)


def test_a_sender_that_fails_is_restarted_by_the_next_record(memory_server: MemoryLogServer,
                                                            app_logger: logging.Logger,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    handler = LogstreamHandler(memory_server.target, "apps", "bug", flush_interval_s=0.01)
    settle = handler._settle
    calls = []

    def buggy(*args: object, **kwargs: object) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("a bug in the sender")
        settle(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(handler, "_settle", buggy)
    app_logger.addHandler(handler)
    app_logger.info("r0")
    assert handler.flush(0.5) is False  # the batch went back to the buffer; no sender until the next record
    assert len(calls) == 1 and handler.pending() == 1
    for n in range(1, 6):
        app_logger.info("r%d", n)
    assert handler.flush(5) is True
    lines = memory_server.lines("apps", "bug")
    assert lines == ["r0"] + [f"r{n}" for n in range(6)]  # the failed batch is sent again (at-least-once)
    assert (handler.sent, handler.dropped) == (6, 0)
    err = capsys.readouterr().err
    assert err.count("logstream handler: sender thread failed") == 1 and "RuntimeError" in err


def test_a_fork_waits_a_bounded_time_for_a_call_in_flight(app_logger: logging.Logger) -> None:
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from typing import Any

    from logstream import handler as handler_module
    from logstream._proto import logstream_pb2 as pb
    from logstream._proto import logstream_pb2_grpc as pb_grpc

    release = threading.Event()

    class Slow(pb_grpc.LogStreamerServicer):
        def LogBatch(self, request: Any, context: Any) -> Any:
            release.wait(10)  # answers only when the test lets it
            return pb.LogBatchResponse(lines=1)

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_LogStreamerServicer_to_server(Slow(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        handler = LogstreamHandler(f"127.0.0.1:{port}", "a", "b", flush_interval_s=0.01, timeout_s=30)
        app_logger.addHandler(handler)
        app_logger.info("slow")
        deadline = time.monotonic() + 5
        while not handler._calling.locked() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handler._calling.locked()  # the sender is inside its call
        began = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        waited = time.monotonic() - began
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # it waited for the call, then cancelled it: a call that does not end cannot hold the fork,
        # and the child never starts with a call in flight (such children could crash)
        assert handler_module.FORK_WAIT_S - 0.05 <= waited < handler_module.FORK_WAIT_S + 1.0
        release.set()
        assert handler.flush(5) and (handler.sent, handler.dropped) == (1, 0)  # sent again on a new channel
    finally:
        release.set()
        server.stop(None)


def test_a_handler_given_several_mediators_ships_through_the_one_that_answers(
        memory_server: MemoryLogServer, app_logger: logging.Logger, down_port: int) -> None:
    dead = f"127.0.0.1:{down_port}"  # held, never listening: refused
    handler = LogstreamHandler(f"{dead},{memory_server.target}", "apps", "two", batch_lines=10,
                               flush_interval_s=0.01, first_backoff_s=5.0)
    app_logger.addHandler(handler)
    for n in range(30):
        app_logger.info("record %d", n)
    began = time.monotonic()
    assert handler.flush(5) is True
    assert time.monotonic() - began < 2.5  # moved on at once, not after the 5 s backoff
    handler.close()
    assert memory_server.lines("apps", "two") == [f"record {n}" for n in range(30)]
