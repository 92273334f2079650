"""`logstream send`'s input side: a reader thread that follows stdin line by line, the pure rule of when
the pending lines go, and the loop that ships them (batch full, flush interval, end of input, or stop)."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from logstream.client import Line, encode_line

# How often the loop looks at the stop flag while it waits for input: a signal handler only sets the
# flag (it must not touch the queue's lock, which the interrupted thread may hold).
POLL_S: Final = 0.1


@dataclass(frozen=True)
class FlushRule:
    """When pending lines are sent: `max_lines` or `max_bytes` reached, the oldest pending line has
    waited `interval_s`, or the input ended."""

    max_lines: int
    max_bytes: int
    interval_s: float

    def fits(self, lines: int, size: int, incoming: int) -> bool:
        """Whether a line of `incoming` bytes may join `lines` pending lines of `size` bytes (a
        longer line than max_bytes travels alone)."""
        return lines == 0 or (lines < self.max_lines and size + incoming <= self.max_bytes)

    def due(self, lines: int, size: int, oldest_age_s: float, ended: bool) -> bool:
        """Send the pending lines now."""
        return lines > 0 and (ended or lines >= self.max_lines or size >= self.max_bytes
                              or oldest_age_s >= self.interval_s)

    def wait_s(self, lines: int, oldest_age_s: float) -> float:
        """How long to wait for more input before the pending lines become due by the interval."""
        return self.interval_s if lines == 0 else max(0.0, self.interval_s - oldest_age_s)


class _Empty:
    """Nothing arrived within the wait."""


EMPTY: Final = _Empty()


def fd_lines(fd: int, chunk_bytes: int = 1 << 16) -> Iterator[list[bytes]]:
    """The lines of file descriptor `fd` (newline kept), a list per read: each read returns as soon as
    some bytes arrived, so a line is passed on when its newline arrives; an unended last line at EOF too."""
    rest = b""
    while data := os.read(fd, chunk_bytes):
        parts = (rest + data).split(b"\n")
        rest = parts.pop()
        if parts:
            yield [part + b"\n" for part in parts]
    if rest:
        yield [rest]


class LineReader:
    """Reads lines in a daemon thread into a bounded queue; EOF arrives as None.

    A thread because a blocking read of a pipe or terminal cannot be given a timeout portably, and the
    sender must wake for its flush interval and for a stop signal. It is a daemon: a read that never
    returns (a terminal nobody types into) must not keep the process alive after the last send. It
    reads the raw descriptor (`fd_lines`), not `sys.stdin.buffer`: a daemon thread blocked inside a
    buffered reader's lock makes the interpreter abort at exit. The queue holds lists of lines (one
    queue operation per read, not per line) and is bounded, so a fast producer waits for the network."""

    def __init__(self, chunks: Iterable[list[bytes]], capacity: int = 64) -> None:
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(max(1, capacity))
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(chunks,), name="logstream-send-stdin", daemon=True)
        self._thread.start()

    def _run(self, chunks: Iterable[list[bytes]]) -> None:
        try:
            for lines in chunks:
                self._queue.put(lines)
        except OSError as exc:
            self.error = exc
        finally:
            self._queue.put(None)

    def get(self, timeout_s: float) -> list[bytes] | None | _Empty:
        """The lines read so far (at least one), None at the end of the input, or EMPTY when nothing
        came within `timeout_s`."""
        try:
            lines = self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return EMPTY
        if lines is None:
            self._queue.put(None)  # the end stays the end for later calls
        return lines


class ListSource:
    """The LINE arguments as a source with LineReader's `get`."""

    def __init__(self, lines: Iterable[Line]) -> None:
        self._lines: list[bytes] | None = [encode_line(line) for line in lines]

    def get(self, timeout_s: float) -> list[bytes] | None | _Empty:
        lines, self._lines = self._lines, None
        return lines or None


class Source(Protocol):
    """Where `follow` takes its lines from: LineReader, ListSource (or a test's script)."""

    def get(self, timeout_s: float) -> list[bytes] | None | _Empty: ...


def follow(source: Source, rule: FlushRule, ship: Callable[[list[bytes]], None],
           stop: threading.Event, clock: Callable[[], float] = time.monotonic) -> bool:
    """Ship lines from `source` in batches by `rule` until the input ends or `stop` is set; after a
    stop, the lines already read are still shipped. True when the input ended, False when stopped."""
    pending: list[bytes] = []
    size = 0
    first_at = 0.0
    max_lines, max_bytes = rule.max_lines, rule.max_bytes
    while True:
        stopping = stop.is_set()
        wait = 0.0 if stopping else min(POLL_S, rule.wait_s(len(pending), clock() - first_at))
        item = source.get(wait)
        ended = item is None or (stopping and item is EMPTY)  # stopping: what was read is all there is
        if isinstance(item, list):
            if not pending:
                first_at = clock()
            for line in item:  # the hot loop of a bulk pipe: rule.fits inlined
                data = line if line.endswith(b"\n") else encode_line(line)
                if pending and (len(pending) >= max_lines or size + len(data) > max_bytes):
                    ship(pending)
                    pending, size = [], 0
                    first_at = clock()
                pending.append(data)
                size += len(data)
        if rule.due(len(pending), size, clock() - first_at, ended):
            ship(pending)
            pending, size = [], 0
        if ended:
            return not stopping
