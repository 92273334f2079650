"""`logstream send`'s input rules: a batch goes when full, after the flush interval, at the end of input
or on a stop, never later and never split wrong; retries are bounded by time; the plain-word messages."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import grpc
from hypothesis import given
from hypothesis import strategies as st

from logstream.client import RetryPolicy, SendError
from logstream.commands.send import describe, filename_warning, plural
from logstream.commands.send_input import EMPTY, FlushRule, LineReader, ListSource, _Empty, fd_lines, follow
from logstream.node.channel import Reach


class _Script:
    """A source whose items arrive at given times on a fake clock; `get` advances the clock."""

    def __init__(self, items: list[tuple[float, bytes | None]]) -> None:
        self.items = items
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def get(self, timeout_s: float) -> list[bytes] | None | _Empty:
        if self.items and self.items[0][0] <= self.now + timeout_s:
            at, item = self.items.pop(0)
            self.now = max(self.now, at)
            if item is None:
                return None
            lines = [item]  # lines arriving at the same instant come in one read, as from a pipe
            while self.items and self.items[0][0] == at and self.items[0][1] is not None:
                lines.append(self.items.pop(0)[1])  # type: ignore[arg-type]
            return lines
        self.now += max(timeout_s, 1e-6)  # a real wait takes time; a float too small to move `now` would not
        return EMPTY


@given(st.lists(st.tuples(st.floats(0, 0.5), st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n")),
                max_size=60),
       st.integers(1, 7), st.integers(10, 200), st.sampled_from([0.05, 0.2, 1.0]))
def test_batches_keep_order_limits_and_the_interval(gaps: list[tuple[float, bytes]], max_lines: int, max_bytes: int,
                                                   interval: float) -> None:
    at, items = 0.0, []
    for gap, line in gaps:
        at += gap
        items.append((at, line))
    script = _Script([*items, (at + 5.0, None)])
    arrived = {id(line): t for t, line in items}
    shipped: list[tuple[float, list[bytes]]] = []
    rule = FlushRule(max_lines, max_bytes, interval)
    assert follow(script, rule, lambda batch: shipped.append((script.now, batch)), threading.Event(), script.clock)
    assert [line for _, batch in shipped for line in batch] == [line for _, line in items]
    for sent_at, batch in shipped:
        assert 0 < len(batch) <= max_lines
        assert len(batch) == 1 or sum(map(len, batch)) <= max_bytes
        # the oldest line waited at most the interval (plus one poll step of the fake clock)
        assert sent_at - arrived[id(batch[0])] <= interval + 0.1 + 1e-9


def test_a_stop_ships_what_was_read_and_reports_it() -> None:
    stop = threading.Event()
    shipped: list[bytes] = []
    source = ListSource(["a", "b"])
    stop.set()
    assert follow(source, FlushRule(100, 10_000, 3600.0), shipped.extend, stop) is False
    assert shipped == [b"a\n", b"b\n"]


def test_fd_lines_passes_each_line_when_its_newline_arrives() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"one\ntw")
        lines = fd_lines(read_end)
        assert next(lines) == [b"one\n"]  # returned without waiting for more input
        os.write(write_end, b"o\nthree")
        assert next(lines) == [b"two\n"]
        os.close(write_end)
        write_end = -1
        assert list(lines) == [[b"three"]]
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_line_reader_times_out_then_ends() -> None:
    gate = threading.Event()
    reader = LineReader(_after(gate, [[b"x\n"]]))
    assert reader.get(0.01) is EMPTY
    gate.set()
    assert reader.get(5) == [b"x\n"]
    assert reader.get(5) is None
    assert reader.get(5) is None  # the end stays the end


def _after(gate: threading.Event, chunks: list[list[bytes]]) -> Iterator[list[bytes]]:
    assert gate.wait(5), "the test never opened the gate"
    yield from chunks


@given(st.integers(1, 50), st.floats(0, 100))
def test_retry_by_time_gives_up_only_past_the_total(attempt: int, elapsed: float) -> None:
    policy = RetryPolicy(attempts=None, first_delay_s=0.1, max_delay_s=2.0, total_s=30.0)
    wait = policy.next_delay(attempt, elapsed, rand=lambda: 1.0)
    if elapsed + min(2.0, 0.1 * 2 ** (attempt - 1)) < 30.0:
        assert wait is not None and wait <= 2.0
    else:
        assert wait is None
    assert RetryPolicy(attempts=3, total_s=30.0).next_delay(3, 0.0) is None  # -attempts still caps
    assert RetryPolicy(attempts=None).next_delay(1, 0.0) is None  # no bound at all: no retry


def test_plain_words() -> None:
    assert plural(1, "line") == "1 line" and plural(0, "line") == "0 lines" and plural(2, "line") == "2 lines"
    assert filename_warning("web") is None
    warning = filename_warning("web.log")
    assert warning is not None and "web.log.log" in warning and "-filename web " in warning
    held = describe(SendError("h:1", grpc.StatusCode.ABORTED, "app/x is locked", 1, sent_lines=1), False,
                    Reach.UNDECIDED)
    assert "held by another writer" in held and "nothing was written" in held and "(ABORTED: app/x is locked)" in held
    assert held.endswith("; 1 line was sent before")
    refused = describe(SendError("h:1", grpc.StatusCode.FAILED_PRECONDITION, "send to 1.2.3.4:8000", 1), False,
                       Reach.UNDECIDED)
    assert "refused to write in its current state" in refused and "send to 1.2.3.4:8000" in refused
