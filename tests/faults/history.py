"""Fault-run histories: what a driver sent (each operation with its outcome), what the streamers'
roots hold afterwards, and the checker that compares them (pure: `check` takes values, returns a
`Verdict`).

An operation writes one line `<key>#<seq>|<padding>` to the file of `key`; each key has one
sequential sender, so a key's sequence numbers are sent in increasing order, each after the
previous one finished at the client (acknowledged, refused, or given up: unknown).

Two writers. A streamer may legitimately write a key, lose it (crash, hand-off) and get it back
later, so "root A, then root B, then root A again" in sequence order is no evidence by itself.
What two writers at once leave behind is a *stale write*: a line of operation x written by one
streamer at a time when another streamer had already written a line of a later operation y > x of
the same key (the first one kept writing after the key had moved). Write times come from a
`SizeSampler` that records every file's size every few milliseconds while the load runs; only
definite cases count (x's earliest possible write time after y's latest).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Outcome = Literal["ok", "refused", "unknown"]

# Status codes that mean "definitely not written"; every other failure may have been written.
DEFINITE = frozenset({
    "INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "ABORTED",
    "OUT_OF_RANGE", "UNAUTHENTICATED", "NOT_FOUND", "ALREADY_EXISTS", "UNIMPLEMENTED",
})

# `<stem>_<UTC stamp, µs>Z[_<counter>].log` (logstream/keys/names.py)
_ROTATED = re.compile(r"^(?P<base>.*)_\d{8}T\d{6}\.\d{6}Z?(?:_\d+)?\.log$")


SendFn = Callable[[str, str, str], Awaitable[str]]


def outcome_of(code_name: str) -> Outcome:
    """A status code's name (grpc.StatusCode.X.name, "OK" for success) as an outcome."""
    if code_name == "OK":
        return "ok"
    return "refused" if code_name in DEFINITE else "unknown"


def line_text(key: str, seq: int, pad: int = 40) -> str:
    """The line that operation `seq` of `key` writes (no newline)."""
    return f"{key}#{seq}|" + "x" * pad


@dataclass(frozen=True)
class Op:
    """One operation: a line sent for `key`, when (monotonic seconds) and how it ended."""

    key: str
    seq: int
    text: str
    outcome: Outcome
    start: float
    end: float
    code: str = "OK"


@dataclass(frozen=True)
class Written:
    """One line found in a root, in file order; `complete` is False for a last line without its
    newline. The line was written at some time in [lo, hi] (monotonic seconds; -inf/inf: unknown)."""

    root: str
    file: str
    text: str
    complete: bool = True
    lo: float = float("-inf")
    hi: float = float("inf")


@dataclass(frozen=True)
class StaleWrite:
    """`root` wrote operation `seq` of `key` after `other_root` had written the later `later_seq`."""

    key: str
    seq: int
    root: str
    later_seq: int
    other_root: str


@dataclass(frozen=True)
class Verdict:
    """What a history shows. `lost`, `refused_written`, `unsent`, `partial` and `stale` must be empty."""

    acknowledged: int
    refused: int
    unknown: int
    lost: tuple[Op, ...]
    duplicated: int  # extra copies of lines beyond the first
    unacked_written: int  # unknown-outcome operations found on disk
    refused_written: tuple[Op, ...]  # definitely refused, yet on disk
    unsent: tuple[Written, ...]  # complete lines that no operation sent
    partial: tuple[Written, ...]  # a line cut short (no newline, or a prefix of a sent line)
    stale: tuple[StaleWrite, ...]  # two writers at once (see the module docstring)

    @property
    def two_writer(self) -> int:
        return len(self.stale)

    def problems(self) -> list[str]:
        """One line per broken promise (empty: the history is fine)."""
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged lines missing, e.g. {[o.text[:30] for o in self.lost[:5]]}")
        if self.refused_written:
            out.append(f"{len(self.refused_written)} refused lines on disk, e.g. "
                       f"{[(o.text[:30], o.code) for o in self.refused_written[:5]]}")
        if self.unsent:
            out.append(f"{len(self.unsent)} lines on disk never sent, e.g. {[(w.root, w.file, w.text[:40]) for w in self.unsent[:5]]}")
        if self.partial:
            out.append(f"{len(self.partial)} partial lines, e.g. {[(w.root, w.file, w.text[:40]) for w in self.partial[:5]]}")
        if self.stale:
            out.append(f"{len(self.stale)} writes by a second writer, e.g. {list(self.stale[:5])}")
        return out


def check(ops: Sequence[Op], written: Sequence[Written]) -> Verdict:
    """Compare what was sent with what is on disk (see Verdict)."""
    by_text = {op.text: op for op in ops}
    by_head = {op.text.split("|", 1)[0]: op.text for op in ops}
    counts: Counter[str] = Counter()
    unsent: list[Written] = []
    partial: list[Written] = []
    found: list[tuple[Written, Op]] = []
    for line in written:
        op = by_text.get(line.text)
        if op is not None and line.complete:
            counts[line.text] += 1
            found.append((line, op))
        elif not line.complete or by_head.get(line.text.split("|", 1)[0], "\0").startswith(line.text):
            partial.append(line)
        else:
            unsent.append(line)
    lost = tuple(op for op in ops if op.outcome == "ok" and counts[op.text] == 0)
    refused_written = tuple(op for op in ops if op.outcome == "refused" and counts[op.text] > 0)
    return Verdict(
        acknowledged=sum(op.outcome == "ok" for op in ops),
        refused=sum(op.outcome == "refused" for op in ops),
        unknown=sum(op.outcome == "unknown" for op in ops),
        lost=lost,
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        unacked_written=sum(1 for op in ops if op.outcome == "unknown" and counts[op.text] > 0),
        refused_written=refused_written,
        unsent=tuple(unsent),
        partial=tuple(partial),
        stale=stale_writes(found),
    )


def stale_writes(found: Sequence[tuple[Written, Op]]) -> tuple[StaleWrite, ...]:
    """Writes of an operation that surely came after another root wrote a later operation of the key."""
    by_key: dict[str, list[tuple[Written, Op]]] = defaultdict(list)
    for line, op in found:
        by_key[op.key].append((line, op))
    stale: list[StaleWrite] = []
    for key, items in by_key.items():
        done = sorted(items, key=lambda item: item[0].hi)
        # Sweep the writes by their earliest time; keep, per root, the highest sequence number
        # among writes that surely happened before it.
        best: dict[str, tuple[int, str]] = {}
        i = 0
        for line, op in sorted(items, key=lambda item: item[0].lo):
            while i < len(done) and done[i][0].hi < line.lo:
                other, other_op = done[i]
                if other_op.seq > best.get(other.root, (-1, ""))[0]:
                    best[other.root] = (other_op.seq, other.root)
                i += 1
            later = max((seq for root, (seq, _) in best.items() if root != line.root), default=-1)
            if later > op.seq:
                other_root = next(root for root, (seq, _) in best.items() if root != line.root and seq == later)
                stale.append(StaleWrite(key, op.seq, line.root, later, other_root))
    return tuple(stale)


def resume_s(ops: Sequence[Op], after: float, keys: Iterable[str] | None = None) -> float | None:
    """Seconds from `after` to the first acknowledgement of an operation sent at or after it (of
    `keys` only, when given): one already under way may have been written before."""
    wanted = None if keys is None else set(keys)
    acks = [op.end for op in ops if op.outcome == "ok" and op.start >= after and (wanted is None or op.key in wanted)]
    return min(acks) - after if acks else None


# ---------------------------------------------------------------- reading roots

def file_order(path: Path) -> tuple[str, str, int, str]:
    """Sort key that puts a log name's rotated files first (in name order), its live file last."""
    match = _ROTATED.match(path.name)
    if match:
        return (str(path.parent), match.group("base"), 0, path.name)
    return (str(path.parent), path.name[:-4], 1, path.name)


@dataclass
class SizeSampler:
    """Records every log file's size under some roots every `period_s`, in a thread, so that each
    line's write time can be bounded afterwards. Files are followed by inode (rotation renames)."""

    roots: Mapping[str, Path]
    period_s: float = 0.01
    # inode -> sorted [(time, size)]
    samples: dict[tuple[int, int], list[tuple[float, int]]] = field(default_factory=dict)
    ticks: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SizeSampler:
        self._thread = threading.Thread(target=self._run, name="size-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        for root in self.roots.values():
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    if not name.endswith(".log"):
                        continue
                    try:
                        st = os.stat(os.path.join(folder, name))
                    except OSError:
                        continue
                    self.samples.setdefault((st.st_dev, st.st_ino), []).append((now, st.st_size))
        self.ticks.append(now)

    def window(self, inode: tuple[int, int], start: int, end: int) -> tuple[float, float]:
        """When the bytes [start, end) of a file were written: (surely not before, surely by)."""
        seen = self.samples.get(inode)
        if not seen:
            return float("-inf"), float("inf")
        # Files only grow (append-only; rotation renames, keeping the inode).
        lo = max((t for t, size in seen if size <= start), default=float("-inf"))
        hi = min((t for t, size in seen if size >= end), default=float("inf"))
        if lo == float("-inf"):
            # At the tick before the file was first seen, it did not exist (yet).
            k = bisect.bisect_left(self.ticks, seen[0][0])
            if k > 0:
                lo = self.ticks[k - 1]
        return lo, hi


def read_roots(roots: Mapping[str, Path], sampler: SizeSampler | None = None) -> list[Written]:
    """Every line of every log file under each root (rotated files too, in rotation order)."""
    out: list[Written] = []
    for name, root in roots.items():
        if not root.exists():
            continue
        for path in sorted((p for p in root.rglob("*.log") if p.is_file()), key=file_order):
            data = path.read_bytes()
            st = path.stat()
            rel = str(path.relative_to(root))
            offset = 0
            for part in data.split(b"\n"):
                end = offset + len(part)
                complete = end < len(data)
                if part or complete:
                    lo, hi = (sampler.window((st.st_dev, st.st_ino), offset, end + complete) if sampler
                              else (float("-inf"), float("inf")))
                    out.append(Written(name, rel, part.decode("utf-8", "replace"), complete, lo, hi))
                offset = end + 1
    return out


# ---------------------------------------------------------------- the driver

@dataclass
class Driver:
    """Sends numbered lines for `keys` ("path/filename"), one sequential sender per key, through
    `send(path, filename, line)`, an awaitable that returns the status code's name ("OK" on
    success). Records every operation in `ops`."""

    keys: Sequence[str]
    pad: int = 40
    pause_after_error_s: float = 0.02
    ops: list[Op] = field(default_factory=list)
    next_seq: dict[str, int] = field(default_factory=dict)

    async def run(self, send: SendFn, stop: asyncio.Event, max_ops: int | None = None) -> None:
        await asyncio.gather(*(self._sender(key, send, stop, max_ops) for key in self.keys))

    async def _sender(self, key: str, send: SendFn, stop: asyncio.Event, max_ops: int | None) -> None:
        path, _, filename = key.rpartition("/")
        sent = 0
        while not stop.is_set() and (max_ops is None or sent < max_ops):
            seq = self.next_seq.get(key, 0)
            self.next_seq[key] = seq + 1
            text = line_text(key, seq, self.pad)
            start = time.monotonic()
            code = await send(path, filename, text)
            self.ops.append(Op(key, seq, text, outcome_of(code), start, time.monotonic(), code))
            sent += 1
            if code != "OK":
                await asyncio.sleep(self.pause_after_error_s)

    def acked_since(self, after: float, keys: Iterable[str] | None = None) -> int:
        """Operations sent at or after `after` and acknowledged (of `keys` only, when given)."""
        wanted = None if keys is None else set(keys)
        return sum(1 for op in list(self.ops)
                   if op.outcome == "ok" and op.start >= after and (wanted is None or op.key in wanted))

