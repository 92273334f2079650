"""etcd mode's router: each key to its owner in etcd (else the member rendezvous hashing picks), over one link per streamer.

The mediator holds no state that safety rests on (docs/cluster-protocol.md, "etcd mode"): it grants
no leases, pings nobody and fences nothing. Streamers own keys through their own etcd leases and
refuse a key they do not own with FAILED_PRECONDITION naming the owner in trailing metadata; the
router then sends that key there (at most MAX_REDIRECTS times per write). A stale view costs a
retry, never a second writer. Links (link.py) and outcomes (outcome.py) are the embedded router's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream.coord.gate import choose
from logstream.coord.ownership import ClusterView
from logstream.keys.chunks import Chunk
from logstream.keys.paths import FileKey
from logstream.mediator.config import RouterConfig
from logstream.mediator.counters import Counters
from logstream.mediator.link import StreamerLink, close_links
from logstream.mediator.membership import Holder
from logstream.mediator.outcome import Kind, Outcome
from logstream.mediator.router import DEADLINE_MARGIN_S, RouteError
from logstream.node import auth, tls
from logstream.node.ratelog import RateLimitedLog
from logstream.node.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

# A key whose refusals keep naming another owner within one write (ownership moving faster than a
# forward) is given up with UNAVAILABLE after this many redirects: the caller retries by time.
MAX_REDIRECTS = 4


class EtcdRouter:
    """Routes writes by a `ClusterView` of etcd (kept current by its own supervised task)."""

    def __init__(self, config: RouterConfig, view: ClusterView, tasks: TaskSupervisor,
                 creds: grpc.ChannelCredentials | None = None, mediator_id: str = "", token: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.view = view
        self.tasks = tasks
        self.mediator_id = mediator_id
        # Any node of the cluster may forward in etcd mode: the token (or node certificate) is what
        # a streamer checks; no link number (no mediator-granted leases to outdate).
        self.metadata = auth.call_metadata(mediator_id, token)
        self._creds = creds
        self._clock = clock
        self.links: dict[str, StreamerLink] = {}  # streamer id -> link to its address in the view
        self.counters = Counters()
        self.redirects = 0
        self.closing = False
        self._closing_links: set[asyncio.Task[None]] = set()
        self._failures = RateLimitedLog(logger, "forwards failed")

    # -- links --------------------------------------------------------------------------------

    def _link(self, streamer_id: str) -> StreamerLink | None:
        """The link to a member of the view (a new one when its address changed); None if not a member."""
        addr = self.view.members.get(streamer_id)
        if addr is None:
            return None
        link = self.links.get(streamer_id)
        if link is not None and link.holder.addr == addr and not link.closed:
            return link
        if link is not None:
            self._close_link(streamer_id)
        holder = Holder(streamer_id, addr)
        channel = tls.secure_or_insecure_channel(addr, self._creds)
        link = StreamerLink(holder, channel, self.config, self.counters, self.metadata, self.tasks,
                            on_failed=self._failed, on_idle=_no_idle_tracking)
        link.probed = True  # etcd-mode streamers are logstream's own: every forward RPC exists
        self.links[streamer_id] = link
        return link

    def _failed(self, holder: Holder, reason: str) -> None:
        # Nothing to remove: membership is etcd's. The callers retry (at the key's owner in the
        # view, which changes once the streamer's lease ends) until their wait runs out.
        self._failures.note(f"forward to {holder} failed", reason)

    def _close_link(self, streamer_id: str) -> None:
        link = self.links.pop(streamer_id, None)
        if link is not None:
            link.closed = True
            task = self.tasks.spawn(link.close(), f"close-{link.holder}")
            self._closing_links.add(task)
            task.add_done_callback(self._closing_links.discard)

    def prune(self) -> int:
        """Close the links of streamers no longer members (or at another address): their queued
        lines fail over to their keys' next owner. The number closed."""
        gone = [sid for sid, link in self.links.items() if self.view.members.get(sid) != link.holder.addr]
        for streamer_id in gone:
            self._close_link(streamer_id)
        return len(gone)

    async def prune_loop(self) -> None:
        """Prune the links each time the view changes (a supervised task)."""
        while True:
            await self.view.changed.wait()
            if self.prune():
                logger.info("etcd view: %d members, %d owned keys; links: %d", len(self.view.members),
                            len(self.view.owners), len(self.links))

    # -- writing ------------------------------------------------------------------------------

    def _target(self, key: FileKey, named: dict[FileKey, str]) -> str | None:
        owner = named.get(key)
        return owner if owner is not None else choose(key, self.view.owners, self.view.members)

    async def write(self, chunks: list[Chunk], time_left_s: float | None = None) -> None:
        """Return once every chunk was written by its key's owner; RouteError otherwise.

        Refusals naming the owner are followed at once; failures (a streamer down, or unable to
        prove its lease) and keys without a reachable owner are retried with backoff for
        -handoff-wait (ending a little before the caller's deadline), then UNAVAILABLE."""
        wait_s = self.config.handoff_wait_s
        if time_left_s is not None:
            wait_s = min(wait_s, time_left_s - min(DEADLINE_MARGIN_S, time_left_s / 10))
        pending = chunks
        named: dict[FileKey, str] = {}  # owners refusals named, newer than the view
        redirected: Counter[FileKey] = Counter()
        waited_since: float | None = None
        backoff_s = 0.005
        while True:
            if self.closing:
                raise RouteError(grpc.StatusCode.UNAVAILABLE, "mediator is shutting down")
            by_key: dict[FileKey, list[Chunk]] = {}
            for chunk in pending:
                by_key.setdefault(chunk[0], []).append(chunk)
            retry: list[Chunk] = []
            reason = ""
            # One link item per key: a refusal then names the owner of that key alone.
            submitted: list[tuple[FileKey, asyncio.Future[Outcome], list[Chunk]]] = []
            for key, group in by_key.items():
                target = self._target(key, named)
                link = self._link(target) if target is not None else None
                if link is None:
                    reason = ("no streamer is a member in etcd" if target is None
                              else f"owner {target} is not (yet) a member in this mediator's view")
                    retry.extend(group)
                    continue
                submitted.append((key, link.submit(group), group))
            refused: Outcome | None = None
            moved = False
            for key, future, group in submitted:
                outcome = await future
                if outcome.kind is Kind.WRITTEN:
                    continue
                if outcome.code == grpc.StatusCode.FAILED_PRECONDITION and outcome.owner:
                    redirected[key] += 1
                    self.redirects += 1
                    if redirected[key] > MAX_REDIRECTS:
                        raise RouteError(grpc.StatusCode.UNAVAILABLE,
                                         f"{key}: its owner changed {MAX_REDIRECTS} times during one write; last "
                                         f"named {outcome.owner}")
                    named[key] = outcome.owner
                    moved = True
                    retry.extend(group)
                    continue
                if outcome.kind is Kind.REFUSED:
                    refused = refused or outcome
                    continue
                named.pop(key, None)  # ask the view again: the owner may have changed
                reason = str(outcome)
                retry.extend(group)
            if refused is not None:
                raise RouteError(refused.code, refused.details)
            if not retry:
                return
            self.counters.retries += 1
            pending = retry
            if moved and not reason:
                continue  # every retry follows a named owner: no reason to wait
            now = self._clock()
            if waited_since is None:
                waited_since = now
            remaining = waited_since + wait_s - now
            if remaining <= 0:
                raise RouteError(grpc.StatusCode.UNAVAILABLE, f"no streamer could take {pending[0][0]} within "
                                 f"{max(wait_s, 0.0):.1f}s: {reason}")
            await self._wait_change(min(backoff_s, remaining))
            backoff_s = min(backoff_s * 2, 0.1)

    async def _wait_change(self, timeout_s: float) -> None:
        event = self.view.changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    # -- status and shutdown ------------------------------------------------------------------

    def readiness(self) -> str | None:
        if self.closing:
            return "shutting down"
        if not self.view.loaded:
            return "etcd not read yet"
        if not self.view.members:
            return "no streamer is a member in etcd"
        return None

    async def refresh_stats(self, timeout_s: float = 1.0) -> None:
        """Nothing to refresh: status shows etcd's view (a streamer's counters are its own /metrics)."""

    def status(self) -> pb.StatusResponse:
        """Members (alive: they hold a lease in etcd) with the keys etcd records for them, and this
        mediator's counters."""
        keys: dict[str, list[pb.FileKey]] = {}
        for (path, filename), owner in sorted(self.view.owners.items()):
            keys.setdefault(owner, []).append(pb.FileKey(path=path, filename=filename))
        streamers = [pb.StreamerStatus(id=sid, addr=addr, alive=True, files=keys.get(sid, []), last_seen_s=-1.0)
                     for sid, addr in sorted(self.view.members.items())]
        values = self.counters.as_map()
        values["streamers_live"] = len(self.view.members)
        values["keys_owned"] = len(self.view.owners)
        values["keys_waiting"] = 0
        values["redirects"] = self.redirects
        values["mediators"] = len(self.view.mediators)
        return pb.StatusResponse(mediator_id=self.mediator_id, streamers=streamers, counters=values)

    async def close(self) -> None:
        """Close every link (queued lines fail: the callers get UNAVAILABLE and retry elsewhere)."""
        self.closing = True
        await close_links(self.links)
        if self._closing_links:
            await asyncio.wait(list(self._closing_links))
        self._failures.flush()


def _no_idle_tracking(_keys: list[FileKey]) -> None:
    """Keys are forgotten by etcd (their owner's release or lease end), not by the mediator."""
