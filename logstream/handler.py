"""LogstreamHandler: a `logging` handler that ships records to one logstream file from a background thread.

Delivery: records wait in a bounded in-memory buffer and are sent in order, in batches, by one
sender thread. While the cluster is away (any status but INVALID_ARGUMENT) the sender retries the
same batch with capped, jittered backoff for as long as it takes, keeping order; meanwhile new
records queue behind it. Records are lost only when:
- the buffer is full (`overflowed`; one stderr line per overflow episode, never one per record);
- a record is too long for the server (`too_long` when the handler drops it before sending, or
  `rejected` when the server answers INVALID_ARGUMENT for it: such a batch is split until the bad
  record is alone, so the others are still delivered);
- records are still unsent when `close()` gives up after `close_timeout_s` (`left_at_close`).
`dropped` is their sum. A batch whose reply was lost is sent again: at-least-once, as the cluster.

Fork-safe: in a child made by `os.fork()` the handler starts empty (the parent keeps and sends its own
records) and builds its own channel and sender thread on the first record.

With `spool_dir`, records still unsent when `close()` gives up are written to that folder (at most
`spool_bytes` in all; see spool.py) instead of being dropped, and a handler given the same folder
sends them, oldest first, before its own records when it starts: an application restarted while the
cluster is away loses nothing it closed cleanly (a crash still loses what was only in memory).
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from pathlib import Path

import grpc

from logstream import spool
from logstream.client import DEFAULT_BATCH_BYTES, NO_RETRY, SendError, SyncLogClient
from logstream.handler_policy import (DEFAULT_MAX_LINE_BYTES, Newlines, Oversize, backoff_s, records_through,
                                      shape_record)

__all__ = ["LogstreamHandler"]

_live: weakref.WeakSet[LogstreamHandler] = weakref.WeakSet()
# A fork waits at most this long for a handler's call in flight to end, then cancels it: a child
# forked while another thread is inside a grpc call inherits grpc's state mid-call (grpc skips its
# fork handlers), and such a child can crash. The cancelled batch is sent again (at-least-once).
FORK_WAIT_S = 0.5
_CANCEL_WAIT_S = 1.0
_paused: list[LogstreamHandler] = []
# Channels inherited from the parent are never closed in a child: their threads and sockets belong to
# the parent's grpc runtime. Holding them here keeps a garbage collection from closing them.
_inherited: list[SyncLogClient] = []


def _warn(message: str) -> None:
    """One line on stderr for a handler's own trouble, following `logging.Handler.handleError`'s
    convention: silent when `logging.raiseExceptions` is false (as in production settings)."""
    if not logging.raiseExceptions:
        return
    try:
        sys.stderr.write(f"logstream handler: {message}\n")
        sys.stderr.flush()
    except Exception:  # a closed stderr must not break the application's logging call
        pass


class LogstreamHandler(logging.Handler):
    """Ships formatted records to `<path>/<filename>.log` on a logstream mediator or streamer.

    `emit` never waits for the network. Counters (exact; read them after `flush` or `close`):
    `sent`, `dropped` = `overflowed` + `too_long` + `rejected` + `left_at_close` (+ records emitted
    after close), `truncated` (sent cut to `max_line_bytes` with a marker), `spooled` (left at close,
    kept in `spool_dir`) and `replayed` (sent from `spool_dir`, included in `sent`). Options: see the
    README's "Python client and logging handler".
    """

    def __init__(self, target: str, path: str, filename: str, ca: str | Path | None = None,
                 crt: str | Path | None = None, pk: str | Path | None = None, *, level: int | str = logging.NOTSET,
                 capacity: int = 10_000, capacity_bytes: int = 64 * 1024 * 1024, batch_lines: int = 500,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, flush_interval_s: float = 1.0,
                 flush_timeout_s: float = 5.0, close_timeout_s: float = 5.0, timeout_s: float = 5.0,
                 first_backoff_s: float = 0.1, max_backoff_s: float = 5.0,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, oversize: Oversize = "drop",
                 newlines: Newlines = "keep", spool_dir: str | Path | None = None,
                 spool_bytes: int = 256 * 1024 * 1024) -> None:
        super().__init__(level)
        if min(capacity, capacity_bytes, batch_lines, batch_bytes, max_line_bytes, spool_bytes) < 1:
            raise ValueError("capacity, capacity_bytes, batch_lines, batch_bytes, max_line_bytes and spool_bytes "
                             "must be positive")
        if oversize not in ("drop", "truncate"):
            raise ValueError(f"oversize must be 'drop' or 'truncate', not {oversize!r}")
        if newlines not in ("keep", "escape"):
            raise ValueError(f"newlines must be 'keep' or 'escape', not {newlines!r}")
        self.target, self.path, self.filename = target, path, filename
        self._tls = tuple(Path(p) if p is not None else None for p in (ca, crt, pk))
        self.capacity, self.capacity_bytes = capacity, capacity_bytes
        self.batch_lines, self.batch_bytes = batch_lines, batch_bytes
        self.flush_interval_s, self.flush_timeout_s, self.close_timeout_s = flush_interval_s, flush_timeout_s, close_timeout_s
        self.timeout_s, self.first_backoff_s, self.max_backoff_s = timeout_s, first_backoff_s, max_backoff_s
        self.max_line_bytes, self.oversize, self.newlines = max_line_bytes, oversize, newlines
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.spool_bytes = spool_bytes
        self._client: SyncLogClient | None = self._new_client()  # bad certificate paths fail here, at configuration
        self._closing = False
        self._reset()
        _live.add(self)
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)  # an unusable folder fails here, at configuration
            spool.remove_stale_temporaries(self.spool_dir)
            if spool.segments(self.spool_dir):
                with self._cond:
                    self._replaying = True  # before the thread starts: flush() waits for the replay
                    self._start_sender()  # replay now, not at the first record

    def _new_client(self) -> SyncLogClient:
        ca, crt, pk = self._tls
        # One try per call: the sender owns retrying (by time, keeping order), not the client (by count).
        return SyncLogClient(self.target, ca, crt, pk, retry=NO_RETRY, timeout_s=self.timeout_s,
                             batch_lines=self.batch_lines, batch_bytes=self.batch_bytes)

    def _reset(self) -> None:
        """Empty buffer, zero counters, no sender yet (at start, and in a forked child)."""
        self._cond = threading.Condition()
        self._calling = threading.Lock()  # held by the sender during a call (see FORK_WAIT_S)
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffer_bytes = 0
        self._in_flight = 0         # records taken from the buffer, not yet settled
        self._replay_in_flight = 0  # records read from the spool, not yet settled (still on disk)
        self._parts: collections.deque[list[bytes]] = collections.deque()  # the buffer's batch being sent
        self._flush_waiters = 0
        self._replaying = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._sender_ident: int | None = None
        self._overflowing = False   # inside an overflow episode (warned once)
        self._failing: str | None = None   # the current outage's last error
        self._warned_size = False
        self._warned_rejected = False
        self.sent = 0
        self.dropped = 0
        self.overflowed = 0
        self.too_long = 0
        self.truncated = 0
        self.rejected = 0
        self.left_at_close = 0
        self.spooled = 0
        self.replayed = 0
        self.retries = 0  # sends that failed and were tried again (an outage's length, in tries)

    def _after_fork_in_child(self) -> None:
        if self._client is not None:
            _inherited.append(self._client)
        self._client = None
        self._reset()

    # ------------------------------------------------------------ application side

    def filter(self, record: logging.LogRecord) -> bool:
        # grpc (or anything) logging from our own sender thread must not come back to us: it would
        # feed back, and `handle` would wait for the handler lock that logging.shutdown holds.
        if record.thread is not None and record.thread == self._sender_ident:
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            shaped = shape_record(self.format(record), self.max_line_bytes, self.oversize, self.newlines)
        except Exception:
            self.handleError(record)
            return
        warning = None
        with self._cond:
            data = shaped.data
            if data is None:
                self.too_long += 1
                self.dropped += 1
                if not self._warned_size:
                    self._warned_size = True
                    warning = (f"dropped a record with a line over {self.max_line_bytes} bytes (max_line_bytes); "
                               "further ones are only counted in .too_long")
            elif self._closing:
                self.dropped += 1
            elif (len(self._buffer) + self._in_flight >= self.capacity
                  or self._buffer_bytes + len(data) > self.capacity_bytes):
                self.overflowed += 1
                self.dropped += 1
                if not self._overflowing:
                    self._overflowing = True
                    why = f"last error: {self._failing}" if self._failing else "delivery slower than logging"
                    warning = (f"buffer full ({len(self._buffer) + self._in_flight} records), dropping new records for "
                               f"{self.path}/{self.filename}: {why}; counted in .overflowed")
            else:
                self.truncated += shaped.cut
                self._buffer.append(data)
                self._buffer_bytes += len(data)
                if self._thread is None:
                    self._start_sender()
                if len(self._buffer) >= self.batch_lines:
                    self._cond.notify_all()
        if warning:
            _warn(warning)

    def _start_sender(self) -> None:
        """Start the sender thread (caller holds `_cond`); lazily, so a process that forks before
        logging anything (a gunicorn master) has no thread to lose in its children."""
        self._thread = threading.Thread(target=self._run, name=f"logstream-handler-{self.target}", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Records buffered or being sent."""
        with self._cond:
            return len(self._buffer) + self._in_flight + self._replay_in_flight

    def flush(self, timeout_s: float | None = None) -> bool:  # type: ignore[override]  # a bool for callers who ask
        """Wait until every record emitted so far was delivered (or dropped), at most `timeout_s`
        (default `flush_timeout_s`); True when nothing is left pending."""
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not (self._buffer or self._in_flight or self._replaying),
                                           timeout=self.flush_timeout_s if timeout_s is None else timeout_s)
            finally:
                self._flush_waiters -= 1

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is buffered within `timeout_s` (default `close_timeout_s`), then stop; records
        still unsent go to the spool (if any, as far as it has room), the rest are dropped, counted in
        `left_at_close` and reported on one stderr line."""
        with self._cond:
            first = not self._closing
            self._closing = True
            self._cond.notify_all()
            thread, client = self._thread, self._client
        if first:
            if thread is not None:
                thread.join(self.close_timeout_s if timeout_s is None else timeout_s)
                if thread.is_alive():
                    with self._cond:
                        self._abandon = True
                        self._cond.notify_all()
                    if client is not None:
                        client.close()  # cancels a call waiting on a hung cluster
                    thread.join(1.0)
            with self._cond:
                stopped = thread is None or not thread.is_alive()
                # The batch being sent first, then the buffer: the order they were emitted in. A sender
                # still stuck in a call may yet deliver its batch: that one is not spooled.
                unsent = [data for part in self._parts for data in part] if stopped else []
                unsent += self._buffer
                stuck = 0 if stopped else self._in_flight
                self._buffer.clear()
                self._buffer_bytes = 0
                self._in_flight = 0
            self._spill(unsent)  # disk I/O outside the lock: emit() never waits for it
            with self._cond:
                left = len(unsent) - self.spooled + stuck
                self.left_at_close = left
                self.dropped += left
                self._cond.notify_all()
            if self.spooled:
                _warn(f"closed with {self.spooled} records not delivered to {self.target}; kept in {self.spool_dir}")
            if left:
                why = f" ({self._failing})" if self._failing else ""
                _warn(f"closed with {left} records not delivered to {self.target}{why}; see .left_at_close")
            if client is not None:
                client.close()
            _live.discard(self)
        super().close()

    def _spill(self, unsent: list[bytes]) -> None:
        """Write what close() could not deliver to the spool, oldest first, as far as it has room."""
        if self.spool_dir is None or not unsent:
            return
        try:
            room = self.spool_bytes - spool.used_bytes(self.spool_dir)
            count = spool.fit(unsent, room, self.path, self.filename)
            if count:
                spool.write_segment(self.spool_dir, self.path, self.filename, unsent[:count])
                self.spooled = count
        except OSError as exc:
            _warn(f"cannot write the spool {self.spool_dir}: {exc}")

    # ------------------------------------------------------------ sender thread

    def _take(self) -> list[bytes] | None:
        """The next batch, waiting up to flush_interval_s for it to fill; None: stop."""
        with self._cond:
            self._cond.wait_for(lambda: (len(self._buffer) >= self.batch_lines or self._closing
                                         or self._flush_waiters > 0 or self._abandon),
                                timeout=self.flush_interval_s)
            if self._abandon or (self._closing and not self._buffer):
                return None
            batch: list[bytes] = []
            size = 0
            while self._buffer and len(batch) < self.batch_lines and (not batch or size + len(self._buffer[0]) <= self.batch_bytes):
                data = self._buffer.popleft()
                batch.append(data)
                size += len(data)
            self._buffer_bytes -= size
            self._in_flight = len(batch)
            return batch

    def _run(self) -> None:
        try:
            self._send_all()
        except Exception:  # a bug: say so, put the batch back, and let the next record start a new sender
            _warn(f"sender thread failed, restarting on the next record:\n{traceback.format_exc().rstrip()}")
            with self._cond:
                self._buffer.extendleft(reversed([data for part in self._parts for data in part]))
                self._buffer_bytes = sum(len(data) for data in self._buffer)
                self._parts = collections.deque()
                self._in_flight = self._replay_in_flight = 0
                self._replaying = False
                self._thread = None
                self._cond.notify_all()

    def _send_all(self) -> None:
        self._sender_ident = threading.get_ident()
        if self.spool_dir is not None:
            replayed = self._replay(self.spool_dir)
            with self._cond:
                self._replaying = False
                self._cond.notify_all()
            if not replayed:
                return
        while (batch := self._take()) is not None:
            if batch and not self._deliver(batch, self.path, self.filename):
                return

    def _replay(self, folder: Path) -> bool:
        """Send the spool's segments, oldest first, before any new record; False when abandoned."""
        try:
            return self._replay_segments(folder)
        except OSError as exc:  # an unreadable folder must not stop the new records
            _warn(f"cannot replay the spool {folder}: {exc}")
            return True

    def _replay_segments(self, folder: Path) -> bool:
        for claim in spool.claims(folder):
            try:
                segment = claim.read()
            except (spool.SpoolError, OSError) as exc:
                _warn(f"cannot replay {claim.file} ({exc}); kept as {claim.quarantine()}")
                continue
            for start in range(0, len(segment.records), self.batch_lines):
                batch = segment.records[start:start + self.batch_lines]
                with self._cond:
                    self._replay_in_flight = len(batch)
                if not self._deliver(batch, segment.path, segment.filename, replay=True):
                    claim.release()  # left whole on disk: replayed again later (at-least-once)
                    return False
            claim.done()
        return True

    def _deliver(self, batch: list[bytes], path: str, filename: str, replay: bool = False) -> bool:
        """Send `batch` in order until every record is delivered or rejected; False when abandoned."""
        parts = collections.deque([batch])
        if not replay:
            self._parts = parts  # what close() spools if it gives up on this batch
        failures = 0
        while parts:
            part = parts[0]
            try:
                with self._calling:
                    if self._client is None:  # in a forked child, or after a fork cancelled a call
                        self._client = self._new_client()
                    self._client.log_many(path, filename, part)
            except SendError as exc:
                done = records_through(part, exc.sent_lines)
                if done:  # earlier requests (or unary calls) of this part went through
                    self._settle(replay, sent=done)
                    part = parts[0] = part[done:]
                if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                    # Nothing of a refused request was written; halve it until the bad record is alone.
                    parts.popleft()
                    if len(part) == 1:
                        self._settle(replay, rejected=1, error=f"{exc.code.name}: {exc.details}")
                    else:
                        half = len(part) // 2
                        parts.extendleft([part[half:], part[:half]])
                    continue
                failures += 1
                if not self._pause(failures, f"{exc.code.name}: {exc.details}"):
                    return False
                continue
            except Exception as exc:  # noqa: BLE001 - an unexpected error is an outage too: keep the records
                failures += 1
                if not self._pause(failures, f"{type(exc).__name__}: {exc}"):
                    return False
                continue
            self._settle(replay, sent=len(part))
            parts.popleft()
            failures = 0
        return True

    def _settle(self, replay: bool, *, sent: int = 0, rejected: int = 0, error: str = "") -> None:
        warning = None
        with self._cond:
            if self._abandon:
                return  # close() already counted (or spooled) these records
            if replay:
                self._replay_in_flight -= sent + rejected
                self.replayed += sent
            else:
                self._in_flight -= sent + rejected
            self.sent += sent
            self.rejected += rejected
            self.dropped += rejected
            if sent:
                self._failing = None
                if not self._buffer and not self._in_flight:
                    self._overflowing = False
            if rejected and not self._warned_rejected:
                self._warned_rejected = True
                warning = (f"{self.target} refused a record ({error}); it was dropped, the others are sent; "
                           "further ones are only counted in .rejected")
            self._cond.notify_all()
        if warning:
            _warn(warning)

    def _pause(self, failures: int, error: str) -> bool:
        """Wait before trying again; False when close() gave up on the cluster."""
        with self._cond:
            begins = self._failing is None  # an outage begins: said once, until a batch gets through again
            self.retries += 1
            held = len(self._buffer) + self._in_flight
            self._failing = error
        if begins:  # outside the lock: emit() never waits for stderr
            _warn(f"cannot deliver to {self.target} ({error}); {held} records wait in the buffer and are sent "
                  "when it answers again")
        with self._cond:
            self._cond.wait_for(lambda: self._abandon, timeout=backoff_s(failures, self.first_backoff_s, self.max_backoff_s))
            return not self._abandon


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT_S
    for handler in list(_live):
        if handler._calling.acquire(timeout=max(0.0, deadline - time.monotonic())):
            _paused.append(handler)
            continue
        client, handler._client = handler._client, None
        if client is not None:
            client.close()  # cancels the call; the sender retries on a new channel after the fork
        if handler._calling.acquire(timeout=_CANCEL_WAIT_S):
            _paused.append(handler)


def _after_fork_in_parent() -> None:
    while _paused:
        _paused.pop()._calling.release()


def _after_fork_in_child() -> None:
    _paused.clear()  # the child's handlers get new locks
    for handler in list(_live):
        handler._after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
