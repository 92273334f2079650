"""LogstreamHandler against real `logstream` processes: records wait out a cluster stop and start (none
lost while the buffer has room, order kept), a forked child's records arrive after its flush even when
it leaves with os._exit, and one oversized record does not cost the good ones."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import Node, start_node

from logstream.handler import LogstreamHandler
from logstream.handler_policy import DEFAULT_MAX_LINE_BYTES, TRUNCATED_MARKER

pytestmark = pytest.mark.e2e

HEALTH = ["-health-interval", "1s"]


def _mediator(port: int = 0) -> Node:
    return start_node(["mediator", "-host", "127.0.0.1", "-port", str(port), *HEALTH])


def _streamer(root: Path, *extra: str) -> Node:
    return start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-size", "-1",
                       "-id", "s1", *extra])


def _cluster(root: Path, port: int = 0) -> tuple[Node, Node]:
    mediator = _mediator(port)
    streamer = _streamer(root, "-mediator", mediator.address)
    mediator.wait_for(r"is live \(1 live\)")
    return mediator, streamer




def _first_occurrences(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    return [line for line in lines if not (line in seen or seen.add(line))]  # type: ignore[func-returns-value]


def test_records_wait_out_a_cluster_stop_and_start(tmp_path: Path, app_logger: logging.Logger) -> None:
    root = tmp_path / "logs"
    mediator, streamer = _cluster(root)
    port = mediator.port
    handler = LogstreamHandler(mediator.address, "app", "outage", batch_lines=50, flush_interval_s=0.05,
                               max_backoff_s=0.5, timeout_s=2)
    app_logger.addHandler(handler)
    emitted = 0
    slowest_emit_s = 0.0
    stop_logging = threading.Event()

    def log_steadily() -> None:  # one record every 5 ms, as an application would, through the outage
        nonlocal emitted, slowest_emit_s
        while not stop_logging.is_set():
            began = time.monotonic()
            app_logger.info("record %06d", emitted)
            slowest_emit_s = max(slowest_emit_s, time.monotonic() - began)
            emitted += 1
            time.sleep(0.005)

    logging_thread = threading.Thread(target=log_steadily)
    logging_thread.start()
    try:
        time.sleep(0.5)
        assert streamer.stop() == 0 and mediator.stop() == 0
        time.sleep(2.0)  # the cluster is away; records pile up in the buffer
        during = handler.pending()
        mediator, streamer = _cluster(root, port)
        time.sleep(0.5)
    finally:
        stop_logging.set()
        logging_thread.join()
    try:
        assert handler.flush(20) is True
        lines = (root / "app/outage.log").read_text().splitlines()
        expected = [f"record {n:06d}" for n in range(emitted)]
        assert _first_occurrences(lines) == expected  # none lost, in order
        assert len(lines) - len(expected) <= 50  # at-least-once: at most one batch sent twice
        assert (handler.sent, handler.dropped) == (emitted, 0)
        assert during > 100  # the outage was real: records waited in the buffer
        assert slowest_emit_s < 0.1  # emit never waited for the network
    finally:
        handler.close()
        assert streamer.stop() == 0 and mediator.stop() == 0


def test_a_forked_child_delivers_its_records_before_os_exit(tmp_path: Path, app_logger: logging.Logger) -> None:
    root = tmp_path / "logs"
    with _streamer(root) as streamer:
        handler = LogstreamHandler(streamer.address, "app", "forked", flush_interval_s=0.01, batch_lines=20)
        app_logger.addHandler(handler)
        app_logger.info("parent 0")
        assert handler.flush(10)  # the parent's sender thread and channel exist before the fork
        for n in range(1, 20):
            app_logger.info("parent %d", n)  # buffered at the fork: the parent's to send, not the child's
        parent_count = 20
        stop = threading.Event()

        def keep_logging() -> None:  # the parent keeps sending while it forks
            nonlocal parent_count
            while not stop.is_set():
                app_logger.info("parent %d", parent_count)
                parent_count += 1
                time.sleep(0.001)

        busy = threading.Thread(target=keep_logging)
        busy.start()
        children = []
        try:
            for child in range(5):
                time.sleep(0.02)
                pid = os.fork()
                if pid == 0:  # the child: report through the exit code only, and never return into pytest
                    code = 1
                    try:
                        for n in range(100):
                            app_logger.info("child%d %d", child, n)
                        code = 0 if handler.flush(10) and handler.sent == 100 and handler.dropped == 0 else 3
                    finally:
                        os._exit(code)
                children.append(pid)
        finally:
            stop.set()
            busy.join()
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        assert handler.flush(10)
        lines = (root / "app/forked.log").read_text().splitlines()
        for child in range(5):
            mine = [line for line in lines if line.startswith(f"child{child} ")]
            assert mine == [f"child{child} {n}" for n in range(100)]
        assert [line for line in lines if line.startswith("parent")] == [f"parent {n}" for n in range(parent_count)]
        assert (handler.sent, handler.dropped) == (parent_count, 0)
        handler.close()
        assert streamer.stop() == 0


def test_one_oversized_record_among_good_ones(tmp_path: Path, app_logger: logging.Logger) -> None:
    root = tmp_path / "logs"
    mediator, streamer = _cluster(root)
    try:
        # Defaults on both sides: the handler knows the nodes' default -max-line and drops the record
        # itself; the good records around it, in the same batch, arrive.
        default = LogstreamHandler(mediator.address, "app", "default", flush_interval_s=0.05)
        # A handler allowing longer lines than the nodes, all seven records in one request: the cluster
        # refuses it (INVALID_ARGUMENT), and the handler isolates the long record by halving the batch.
        lenient = LogstreamHandler(mediator.address, "app", "lenient", flush_interval_s=0.05,
                                   max_line_bytes=4 * DEFAULT_MAX_LINE_BYTES, batch_bytes=8 * DEFAULT_MAX_LINE_BYTES)
        cut = LogstreamHandler(mediator.address, "app", "cut", flush_interval_s=0.05, oversize="truncate")
        for handler in (default, lenient, cut):
            app_logger.addHandler(handler)
        for n in range(3):
            app_logger.info("good %d", n)
        app_logger.info("x" * 2_000_000)
        for n in range(3, 6):
            app_logger.info("good %d", n)
        good = [f"good {n}" for n in range(6)]
        for handler in (default, lenient, cut):
            assert handler.flush(20)
        assert (root / "app/default.log").read_text().splitlines() == good
        assert (default.sent, default.too_long, default.dropped) == (6, 1, 1)
        assert (root / "app/lenient.log").read_text().splitlines() == good
        assert (lenient.sent, lenient.rejected, lenient.dropped) == (6, 1, 1)
        lines = (root / "app/cut.log").read_text().splitlines()
        assert lines[:3] + lines[4:] == good and len(lines) == 7
        assert len(lines[3].encode()) == DEFAULT_MAX_LINE_BYTES and lines[3].endswith(TRUNCATED_MARKER.decode())
        assert (cut.sent, cut.truncated, cut.dropped) == (7, 1, 0)
    finally:
        for attached in app_logger.handlers:
            attached.close()
        assert streamer.stop() == 0 and mediator.stop() == 0


APP = """
import logging, sys
from logstream import LogstreamHandler
target, spool_dir, count, word = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
handler = LogstreamHandler(target, "app", "restart", spool_dir=spool_dir, flush_interval_s=0.05,
                           flush_timeout_s=2, close_timeout_s=0.3)
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
for n in range(count):
    log.info("%s %d", word, n)
# a normal exit: logging.shutdown flushes and closes the handler
"""


def test_an_application_restarted_while_the_cluster_is_away_loses_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    root, folder = tmp_path / "logs", tmp_path / "spool"
    with socket.socket() as refusing:  # bound, not listening: connections are refused, the port stays ours
        refusing.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{refusing.getsockname()[1]}"
        first = subprocess.run([sys.executable, "-c", APP, down, str(folder), "100", "before"],
                               capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert f"closed with 100 records not delivered to {down}; kept in {folder}" in first.stderr
    with _streamer(root) as streamer:
        second = subprocess.run([sys.executable, "-c", APP, streamer.address, str(folder), "10", "after"],
                                capture_output=True, text=True, timeout=30)
        assert (second.returncode, second.stderr) == (0, "")
        lines = (root / "app/restart.log").read_text().splitlines()
        assert lines == [f"before {n}" for n in range(100)] + [f"after {n}" for n in range(10)]
        assert not list(folder.iterdir())
        assert streamer.stop() == 0
