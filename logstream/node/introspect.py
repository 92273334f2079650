"""What a running node is doing, without stopping it: sampled CPU/wall profiles of every thread
(aggregated purely into a top or folded stacks) and the stacks of every thread and asyncio task."""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROFILE_HZ = 100
PROFILE_DEFAULT_S = 30.0
PROFILE_MAX_S = 300.0
PROFILE_TOP_DEFAULT = 40
# A thread counts as on-CPU in a sample when it used at least this much CPU since the previous one.
_ON_CPU_MIN_S = 0.0005


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
