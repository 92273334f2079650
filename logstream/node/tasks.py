"""The one owner of a node's background tasks: starts them, watches them, restarts or fails the node.

Two kinds of work (trio's nursery, uvicorn's main loop):
- `keep(name, factory)`: long-lived work (the health loop, a forwarder, registration). It should
  run until stopped; if it ends on its own (returns, raises, or is cancelled by anyone but this
  supervisor) that is logged with its traceback, the work counts as *down* (health NOT_SERVING)
  and is started again after a backoff. Too many ends within a window, or any end of `critical`
  work that cannot restart, fails the node: `failure` is set and `stop` is set, so the node shuts
  down in order and exits non-zero for its process supervisor to restart it.
- `spawn(coro, name)`: one-shot work (a ping, a hand-off, closing a link). It is owned (cancelled
  at close), and a failure is logged with its traceback; it is not restarted.

Cancelling one piece of work never cancels another: each runs in its own task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 5.0
MAX_ENDS = 5  # ends of one piece of work within WINDOW_S before the node gives up
WINDOW_S = 60.0


class NodeFailed(Exception):
    """Background work could not be kept running; the node must exit non-zero."""


class Kept:
    """A handle on long-lived work; `stop()` ends it for good (idempotent)."""

    def __init__(self, supervisor: TaskSupervisor, name: str, factory: Callable[[], Awaitable[None]],
                 critical: bool) -> None:
        self.name = name
        self.critical = critical
        self._supervisor = supervisor
        self._factory = factory
        self._ends: deque[float] = deque()
        self.restarts = 0
        self.stopping = False
        self._child: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] = asyncio.create_task(self._watch(), name=f"keep-{name}")

    async def _watch(self) -> None:
        supervisor = self._supervisor
        delay_s = BACKOFF_FIRST_S
        while True:
            # The work runs in a task of its own: whatever ends it (even a CancelledError raised
            # inside it by a closed channel) is its outcome, never this watcher's.
            started = supervisor.clock()
            child = self._child = asyncio.create_task(_as_coroutine(self._factory()), name=self.name)
            try:
                await asyncio.wait({child})
            except asyncio.CancelledError:
                child.cancel()
                await asyncio.wait({child})
                raise
            if self.stopping:
                return
            now = supervisor.clock()
            if now - started > supervisor.window_s:  # it had run well for a while: start over
                delay_s = BACKOFF_FIRST_S
            self._ends.append(now)
            while self._ends and self._ends[0] < now - supervisor.window_s:
                self._ends.popleft()
            error = None if child.cancelled() else child.exception()
            how = "was cancelled" if child.cancelled() else "returned" if error is None else "failed"
            logger.error("background task %s %s unexpectedly (%d times in %.0fs)", self.name, how,
                         len(self._ends), supervisor.window_s, exc_info=error)
            if self.critical:
                supervisor.fail(f"critical background task {self.name} ended")
                return
            if len(self._ends) > supervisor.max_ends:
                supervisor.fail(f"background task {self.name} ended {len(self._ends)} times in "
                                f"{supervisor.window_s:.0f}s")
                return
            await supervisor.mark_down(self)
            try:
                await asyncio.sleep(delay_s)
            finally:
                await supervisor.mark_up(self)
            delay_s = min(delay_s * 2, supervisor.backoff_max_s)
            self.restarts += 1
            logger.warning("background task %s restarted", self.name)

    async def stop(self) -> None:
        self.stopping = True
        self._supervisor.kept.discard(self)
        self.task.cancel()
        if asyncio.current_task() not in (self.task, self._child):  # never wait for oneself
            await asyncio.wait({self.task})
        await self._supervisor.mark_up(self)


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


class TaskSupervisor:
    """Owns every background task of one node (see the module docstring)."""

    def __init__(self, stop: asyncio.Event | None = None, *,
                 on_health: Callable[[bool], Coroutine[Any, Any, None]] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_ends: int | None = None,
                 window_s: float = WINDOW_S, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self._stop = stop
        self._on_health = on_health
        self.clock = clock
        self.max_ends = MAX_ENDS if max_ends is None else max_ends
        self.window_s = window_s
        self.backoff_max_s = backoff_max_s
        self.kept: set[Kept] = set()
        self.spawned: set[asyncio.Task[Any]] = set()
        self.down: dict[Kept, str] = {}
        self.failure: str | None = None

    # -- long-lived work ----------------------------------------------------------------------

    def keep(self, name: str, factory: Callable[[], Awaitable[None]], *, critical: bool = False) -> Kept:
        """Run `factory()` until stopped; restart it when it ends (see the module docstring)."""
        kept = Kept(self, name, factory, critical)
        self.kept.add(kept)
        return kept

    def problem(self) -> str | None:
        """None when the node's work is all running; else the reason (read by /healthz, any thread)."""
        if self.failure is not None:
            return self.failure
        down = sorted(kept.name for kept in list(self.down))
        return f"background task down: {', '.join(down)}" if down else None

    async def mark_down(self, kept: Kept) -> None:
        was_ok = not self.down
        self.down[kept] = kept.name
        if was_ok:
            await self._report()

    async def mark_up(self, kept: Kept) -> None:
        if self.down.pop(kept, None) is not None and not self.down:
            await self._report()

    async def _report(self) -> None:
        if self._on_health is not None:
            try:
                await self._on_health(self.problem() is None)
            except Exception:  # reporting health must never take the watcher down
                logger.exception("could not report health")

    def fail(self, reason: str) -> None:
        """The node cannot go on: shut it down and exit non-zero (see `check`)."""
        if self.failure is None:
            self.failure = reason
            logger.critical("%s: shutting down so that the process supervisor restarts this node", reason)
        if self._stop is not None:
            self._stop.set()
        if self._on_health is not None:
            self.spawn(self._on_health(False), "report-failure")

    def check(self) -> None:
        """Raise NodeFailed if `fail` was called (after the node's ordered shutdown)."""
        if self.failure is not None:
            raise NodeFailed(self.failure)

    # -- one-shot work ------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` once, owned: cancelled at `close`, a failure logged with its traceback."""
        task: asyncio.Task[Any] = asyncio.create_task(coro, name=name)
        self.spawned.add(task)
        task.add_done_callback(self._spawned_done)
        return task

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self.spawned.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("task %s failed", task.get_name(), exc_info=error)

    async def close(self) -> None:
        """Stop everything (long-lived work first), waiting for each task to end. One-shot work
        spawned meanwhile (a link's close) is cancelled and awaited too."""
        for kept in list(self.kept):
            kept.stopping = True
        kept_tasks = [kept.task for kept in self.kept]
        for task in kept_tasks:
            task.cancel()
        if kept_tasks:
            await asyncio.wait(kept_tasks)
        self.kept.clear()
        self.down.clear()
        while self.spawned:
            tasks = list(self.spawned)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
