"""The mediator's I/O core: one link per streamer, admissions, health checks, removals, hand-offs, writes.

Every decision comes from `ClusterState` (pure) through its methods; the link (link.py), the
pinger (pinger.py) and the hand-off (handoff.py) do the I/O and report what happened, and this
module applies their reports. Every task it starts is owned by the node's `TaskSupervisor` and
tracked here: `close` ends them all, so none outlives the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream.mediator import handoff
from logstream.mediator.config import RouterConfig
from logstream.mediator.counters import Counters
from logstream.mediator.ledger import LeaseLedger
from logstream.mediator.link import StreamerLink, close_links
from logstream.mediator.membership import Holder
from logstream.keys.chunks import Chunk
from logstream.keys.paths import BadTarget, FileKey, validate_target
from logstream.mediator.outcome import Kind, Outcome
from logstream.mediator.ownership import Handoff, NoStreamers, TableFull, Wait
from logstream.mediator.pinger import Answered, Pinger, PingFailed, answers_again
from logstream.mediator.state import ClusterState
from logstream.mediator.status import status_response
from logstream.node import auth, tls
from logstream.node.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

# A new registration's first health checks are retried for -admit-wait, starting this often.
ADMIT_FIRST_RETRY_S = 0.05
ADMIT_MAX_RETRY_S = 1.0
# A removed streamer's address is pinged again first after this many intervals (or the fence).
REDISCOVER_AFTER_INTERVALS = 3

# A wait ends this long (at most a tenth of the time left) before the caller's deadline.
DEADLINE_MARGIN_S = 0.25
LOCKED_LOGGED_MAX = 10_000  # keys remembered as "lock conflict logged" (then forgotten all at once)


class RouteError(Exception):
    """A request that cannot be written; `code` is the status the caller gets."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Router:
    """The mediator's I/O core: owns the cluster state and one link per streamer."""

    def __init__(self, config: RouterConfig, creds: grpc.ChannelCredentials | None = None,
                 mediator_id: str = "", clock: Callable[[], float] = time.monotonic,
                 ledger: LeaseLedger | None = None, token: str | None = None,
                 tasks: TaskSupervisor | None = None) -> None:
        self.config = config
        # Every background task (forwarders, pings, hand-offs, link closes) belongs to the node's
        # supervisor; a router built alone (tests) owns one.
        self.tasks = TaskSupervisor() if tasks is None else tasks
        self._own_tasks = tasks is None
        self._started: set[asyncio.Task[Any]] = set()  # ours among them: `close` ends them
        # Attached to every call to a streamer: it writes only what its current mediator sends.
        self.metadata = auth.call_metadata(mediator_id, token)
        self._ledger = ledger
        self.mediator_id = mediator_id
        self._creds = creds
        self._clock = clock
        self.state = ClusterState(config.lease_s, config.ping_timeout_s, clock(), config.restart_grace_s,
                                  config.max_keys)
        self.pinger = Pinger(config, mediator_id, clock, self._before_ping)
        self.links: dict[Holder, StreamerLink] = {}
        self.counters = Counters()
        self.removed: dict[str, tuple[Holder, float]] = {}  # id -> (holder, when), for status
        self.departed: set[str] = set()  # ids that left on purpose (Leave) and have not registered since
        self._changed = asyncio.Event()
        self._admitting: set[Holder] = set()  # registered just now: retried pings, not the health loop's
        self._lost: dict[Holder, asyncio.Task[None]] = {}  # removed streamers pinged again with backoff
        self._link_closes: set[asyncio.Task[None]] = set()
        self._locked_logged: set[FileKey] = set()  # keys whose lock conflict was logged
        self.closing = False
        self._link_number = 0

    def _start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start one-shot work, owned by the supervisor (a failure is logged) and by this router."""
        task = self.tasks.spawn(coro, name)
        self._started.add(task)
        task.add_done_callback(self._started.discard)
        return task

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- membership ---------------------------------------------------------------------------

    def _open_link(self, holder: Holder) -> None:
        # Every call on a link names it: the streamer then refuses forwards of an earlier link
        # that a partition held up until after it registered again (docs/cluster-protocol.md).
        # Link numbers only grow within this mediator's incarnation.
        self._link_number += 1
        metadata = self.metadata + ((auth.LINK_HEADER, str(self._link_number)),)
        channel = tls.secure_or_insecure_channel(holder.addr, self._creds)
        self.links[holder] = StreamerLink(holder, channel, self.config, self.counters, metadata, self.tasks,
                                          on_failed=self.fail, on_idle=self._keys_idle)

    def _keys_idle(self, keys: list[FileKey]) -> None:
        self.state.keys_active(keys, self._clock())

    def register(self, streamer_id: str, addr: str) -> Holder:
        self.departed.discard(streamer_id)
        outcome = self.state.register(streamer_id, addr, self._clock())
        for old in outcome.replaced:
            logger.warning("streamer %s replaced by %s (re-registered): its keys wait until its lease has "
                           "surely expired", old, outcome.holder)
            self._close_link(old)
        for old in outcome.superseded:
            logger.info("streamer %s never answered before %s registered", old, outcome.holder)
            self._close_link(old)
        if outcome.candidate:
            logger.warning("streamer %s registers while another holder of its id or address is live: that one "
                           "keeps its keys until %s answers a ping", outcome.holder, outcome.holder.addr)
        for lost in [h for h in self._lost if h.id == streamer_id or h.addr == addr]:
            self._lost.pop(lost).cancel()  # it is back (or its address is another's now)
        if outcome.new:
            if not outcome.candidate:
                self.removed.pop(streamer_id, None)
            self._open_link(outcome.holder)
            logger.info("streamer %s registered; first ping now", outcome.holder)
            self._admitting.add(outcome.holder)
            self._start(self._admit(outcome.holder), f"admit-{outcome.holder}")
        else:
            logger.info("streamer %s registered again (already known)", outcome.holder)
        self._notify()
        return outcome.holder

    async def _admit(self, holder: Holder) -> None:
        """The first health checks of a new registration, retried with backoff for `admit_s`
        before a failure counts: the Go original registers before it listens."""
        try:
            deadline = self._clock() + self.config.admit_s
            delay_s = ADMIT_FIRST_RETRY_S
            while holder in self.links:
                last = self._clock() + delay_s >= deadline
                if await self.ping(holder, tolerate=not last) or last:
                    return
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, ADMIT_MAX_RETRY_S)
        finally:
            self._admitting.discard(holder)

    async def ping(self, holder: Holder, tolerate: bool = False) -> bool:
        """One health check and lease renewal (see `Pinger`); a failure removes the streamer
        (unless `tolerate` and no answer came: a streamer being admitted holds nothing yet).
        The streamer counts as answered (and may become live) only once both pings were."""
        link = self.links.get(holder)
        if link is None or link.closed:
            return False
        result = await self.pinger.check(holder, link)
        if isinstance(result, PingFailed):
            if not (tolerate and result.unanswered):
                self.fail(holder, result.reason)
            return False
        await self._answered(holder, link, result)
        return True

    async def _answered(self, holder: Holder, link: StreamerLink, answer: Answered) -> None:
        for old in self.state.promote(holder):  # a candidate answered: now it replaces them
            logger.warning("streamer %s replaced by %s (answered at its new address): its keys wait until "
                           "its lease has surely expired", old, holder)
            self.counters.removals += 1
            self._close_link(old)
        if not link.probed:
            await link.probe()
        first, reply = answer.first, answer.last
        held = _held_keys(first.held or reply.held)
        grace_until = self.state.grace_until
        # Every file open at the streamer when it answered was written after this (its clock may
        # run up to 10% off ours); one that reports nothing (the Go original, which holds no
        # locks and writes only what it is sent) counts as having nothing open.
        sent = answer.sent
        closed_before = sent - 1.1 * reply.open.oldest_write_age_ms / 1000 if reply.HasField("open") else sent
        stats = reply.stats
        plans = self.state.ping_answered(holder, self._clock(), stats.lines, stats.bytes, stats.open_files, held,
                                         max(first.held_lease_ms, reply.held_lease_ms) / 1000, closed_before)
        if self.state.grace_until < grace_until:
            logger.info("every streamer of the previous run has answered: placing keys in %.1fs, not %.1fs",
                        max(0.0, self.state.grace_until - self._clock()), max(0.0, grace_until - self._clock()))
        if plans is not None:
            kept = len(self.state.keys_of(holder)) if held else 0
            logger.info("streamer %s is live (%d live)%s", holder, len(self.state.live()),
                        f"; kept {kept} of the {len(held)} keys it held under the previous mediator" if held else "")
            for plan in plans:
                self.counters.handoffs += 1
                self._start(self._handoff(plan), f"handoff-{plan.source}")
            self._notify()

    def _before_ping(self, holder: Holder) -> None:
        """Before a ping that may grant a lease: the ledger must cover it, for a restart's sake."""
        now = self._clock()
        if self._ledger is not None:
            try:
                self._ledger.cover(self.state.expiry_bound_s, self.config.health_interval_s,
                                   self.state.may_hold_leases(now))
            except OSError as exc:
                logger.error("cannot record leases in %s: %s (a restarted mediator would wait too little)",
                             self._ledger.path, exc)
        self.state.ping_sent(holder, now)

    async def ping_all(self) -> None:
        """Ping every member (but those being admitted), each in a task of its own: one ping's
        failure, even a CancelledError from a channel closed under it, is that ping's outcome and
        never the health loop's. Cancelled, it cancels its pings."""
        pings = [self._start(self.ping(holder), f"ping-{holder}")
                 for holder in self.state.to_ping() if holder not in self._admitting]
        if not pings:
            return
        try:
            await asyncio.wait(pings)
        finally:
            for task in pings:
                task.cancel()

    def fail(self, holder: Holder, reason: str) -> None:
        """Remove a streamer (a failed forward, ping or release): fence its keys until its lease
        has surely expired."""
        was_member, was_live = self.state.is_member(holder), self.state.is_live(holder)
        fenced = self.state.failed(holder)
        if fenced is None:
            return
        self.counters.removals += 1
        self.removed[holder.id] = (holder, self._clock())
        wait_s = max(0.0, self.state.surely_expired_at(holder) - self._clock())
        logger.warning("streamer %s removed (was %s): %s; %d keys wait %.1fs for its lease to lapse; %d live",
                       holder, "live" if was_live else "pending", reason, len(fenced), wait_s, len(self.state.live()))
        self._close_link(holder)
        # A failed candidate (a registration that never answered where it said) is not looked for.
        if was_member and not self.closing and holder not in self._lost:
            self._lost[holder] = self._start(self._rediscover(holder), f"rediscover-{holder}")
        self._notify()

    async def leave(self, holder: Holder, files_closed: bool) -> list[FileKey] | None:
        """A streamer stopping on purpose (LeaveRequest). Step 1 (`files_closed` False): nothing
        more is routed to it; its keys wait (None: not a member). Step 2: its files are closed, its
        keys are free at once. Either way its link ends before the answer (its open LogStream
        would otherwise keep its server's stop waiting), with no warning and no search for it."""
        keys = self.state.left(holder) if files_closed else self.state.leaving(holder)
        if keys is None:
            return None
        self.departed.add(holder.id)
        link = self.links.pop(holder, None)
        if link is not None:
            await link.close()  # queued lines fail over to their keys' next owner
        self._notify()  # wake requests waiting for its keys
        return keys

    async def _rediscover(self, holder: Holder) -> None:
        """Look for a removed streamer (see `answers_again`) and re-admit it once it answers,
        through the normal pending -> live path: a streamer that never registers again (the Go
        original registers only at start) still comes back."""
        # First after its keys may be placed anew (their fence ends) and no sooner than a streamer
        # re-registers by itself: one that answers pings but fails forwards flaps no faster than
        # it would without this search.
        first_delay_s = max(REDISCOVER_AFTER_INTERVALS * self.config.health_interval_s, self.state.expiry_bound_s)
        try:
            found = await answers_again(holder, self._creds, self.metadata, self.config.ping_timeout_s,
                                        first_delay_s, self._clock)
        finally:
            if self._lost.get(holder) is asyncio.current_task():
                del self._lost[holder]  # before register(), which stops the search for this id
        if not found:
            logger.info("stopped looking for removed streamer %s", holder)
        elif not self.closing:
            logger.info("removed streamer %s answers again: admitting it anew", holder)
            self.register(holder.id, holder.addr)

    def _close_link(self, holder: Holder) -> None:
        link = self.links.pop(holder, None)
        if link is not None:
            link.closed = True
            task = self._start(link.close(), f"close-{holder}")
            self._link_closes.add(task)
            task.add_done_callback(self._link_closes.discard)

    async def _handoff(self, plan: Handoff) -> None:
        problem = await handoff.release(self.links.get(plan.source), plan, self.mediator_id, self.config)
        if problem is None:
            self.state.handoff_done(plan, True, self._clock())
            logger.info("handed off %d keys from %s to %s", len(plan.keys), plan.source, plan.target)
        else:
            self.fail(plan.source, problem)
            self.state.handoff_done(plan, False, self._clock())
        self._notify()

    def _busy(self, holder: Holder, key: FileKey) -> bool:
        link = self.links.get(holder)
        return link is not None and key in link.pending

    def forget_idle(self) -> int:
        """Forget keys idle for -key-idle that their owners reported closed (and fenced keys whose
        old owner's lease has surely expired): the table shrinks back as keys fall out of use."""
        forgotten = self.state.forget_idle(self._clock(), self.config.key_idle_s, self._busy)
        if forgotten:
            self.counters.keys_forgotten += len(forgotten)
            logger.debug("forgot %d idle keys (%d left)", len(forgotten), self.state.table_size())
        return len(forgotten)

    # -- writing ------------------------------------------------------------------------------

    async def write(self, chunks: list[Chunk], time_left_s: float | None = None) -> None:
        """Return once every chunk was written by its key's owner; RouteError otherwise.

        Waiting (for a key's owner, or for a lock held elsewhere) lasts at most -handoff-wait, and
        ends a little before the caller's deadline (`time_left_s`), so that the caller gets the
        reason (`ABORTED`, `UNAVAILABLE`) rather than `DEADLINE_EXCEEDED`.
        """
        pending = chunks
        waited_since: float | None = None
        wait_s = self.config.handoff_wait_s
        if time_left_s is not None:
            wait_s = min(wait_s, time_left_s - min(DEADLINE_MARGIN_S, time_left_s / 10))
        backoff_s = 0.005
        swept = False
        while True:
            if self.closing:
                raise RouteError(grpc.StatusCode.UNAVAILABLE, "mediator is shutting down")
            now = self._clock()
            groups: dict[Holder, list[Chunk]] = {}
            retry: list[Chunk] = []
            reason: Wait | Outcome | None = None
            route = self.state.route
            for chunk in pending:
                target = route(chunk[0], now)
                if target is TableFull.FULL and not swept:  # idle keys make room first
                    swept = True
                    self.forget_idle()
                    target = route(chunk[0], now)
                if target.__class__ is Holder:
                    group = groups.get(target)
                    if group is None:
                        groups[target] = [chunk]
                    else:
                        group.append(chunk)
                elif target is NoStreamers.NONE:
                    raise RouteError(grpc.StatusCode.UNAVAILABLE,
                                     "no live streamer: none has registered and answered a health check yet, "
                                     "or every streamer has left")
                elif target is TableFull.FULL:
                    raise RouteError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"the mediator's key table is full: {self.config.max_keys} keys "
                                     f"(-max-keys), none idle for -key-idle ({self.config.key_idle_s:g}s) "
                                     f"and closed by its streamer; {chunk[0]} is a new key")
                else:
                    assert isinstance(target, Wait)
                    retry.append(chunk)
                    reason = target
            if groups:
                submitted = [(holder, self.links[holder].submit(group), group) for holder, group in groups.items()]
                refused: Outcome | None = None
                for holder, future, group in submitted:
                    outcome = await future
                    kind = outcome.kind
                    if kind is Kind.WRITTEN:
                        continue
                    if kind is Kind.REFUSED:
                        refused = refused or outcome
                        continue
                    if kind is Kind.RETRY:
                        self._note_locked(holder, group, outcome)
                    retry.extend(group)  # RETRY: at the same owner; FAILED: at the key's next owner
                    reason = outcome
                if refused is not None:
                    raise RouteError(refused.code, refused.details)
            if not retry:
                return
            self.counters.retries += 1
            pending = retry
            now = self._clock()
            if waited_since is None:
                waited_since = now
            remaining = waited_since + wait_s - now
            if remaining <= 0:
                # A file locked by another process is a definite refusal, not an outage: say so.
                code = reason.code if isinstance(reason, Outcome) and reason.kind is Kind.RETRY \
                    else grpc.StatusCode.UNAVAILABLE
                raise RouteError(code, f"no streamer could take {pending[0][0]} within "
                                 f"{max(wait_s, 0.0):.1f}s: {_describe(reason)}")
            await self._wait_change(min(backoff_s, remaining))
            backoff_s = min(backoff_s * 2, 0.1)

    def _note_locked(self, holder: Holder, chunks: list[Chunk], refusal: Outcome) -> None:
        """Log once per key that its owner cannot write it because another process holds the
        file's lock (a direct writer, a second cluster on the same disk)."""
        for key in {chunk[0] for chunk in chunks}:
            if key in self._locked_logged:
                continue
            if len(self._locked_logged) >= LOCKED_LOGGED_MAX:
                self._locked_logged.clear()
            self._locked_logged.add(key)
            logger.warning("streamer %s cannot write %s: %s; retrying for up to %.1fs, then the caller gets %s",
                           holder, key, refusal.details, self.config.handoff_wait_s, refusal.code.name)

    async def _wait_change(self, timeout_s: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    # -- status and shutdown ------------------------------------------------------------------

    async def refresh_stats(self, timeout_s: float = 1.0) -> None:
        """Ask every live streamer for its counters now (status would otherwise show the last
        ping's, up to a health interval old); a streamer that does not answer keeps those."""

        async def ask(holder: Holder, link: StreamerLink) -> None:
            try:
                stats = await link.control.Stats(pb.StatsRequest(), timeout=timeout_s, metadata=link.metadata)
            except grpc.aio.AioRpcError:
                return
            self.state.record_stats(holder, stats.lines, stats.bytes, stats.open_files)

        await asyncio.gather(*(ask(holder, link) for holder, link in list(self.links.items())
                               if not link.closed and self.state.is_live(holder)))

    def status(self) -> pb.StatusResponse:
        return status_response(self.state, self.counters, self.removed.values(), self.mediator_id, self._clock())

    async def close(self) -> None:
        """Close every link (queued lines fail over), then end every task this router started."""
        self.closing = True
        await close_links(self.links)
        if self._link_closes:  # links closed earlier: let them finish closing their channels
            await asyncio.wait(list(self._link_closes))
        while self._started:
            started = list(self._started)
            for task in started:
                task.cancel()
            await asyncio.wait(started)
        if self._own_tasks:
            await self.tasks.close()


def _held_keys(keys: Sequence[pb.FileKey]) -> list[FileKey]:
    """A streamer's report of the keys it held, in the mediator's normal form; invalid ones dropped."""
    held = []
    for key in keys:
        try:
            target = validate_target(key.path, key.filename)
        except BadTarget:
            continue
        held.append(FileKey(target.path, target.stem))
    return held


def _describe(reason: Wait | Outcome | None) -> str:
    if isinstance(reason, Wait):
        return f"the key is {reason.value}" if reason is Wait.HANDOFF else reason.value
    return str(reason)
