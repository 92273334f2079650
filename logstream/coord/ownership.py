"""etcd mode at run time: a streamer's lease, membership and key claims (`StreamerSession`), a mediator's view (`ClusterView`).

The decisions are coord/protocol.py's; this module does the I/O around them and owns no task of
its own: `run()` is long-lived work for the node's task supervisor (node/tasks.py `keep`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logstream.coord.etcd import Etcd, EtcdUnavailable, LeaseGone
from logstream.coord.protocol import (
    DRIFT,
    KEEPALIVES_PER_TTL,
    MARGIN_S,
    Admit,
    Blocked,
    ClaimOutcome,
    Holdings,
    LeaseClock,
    NotOwner,
    Owned,
    cluster_prefix,
    delete_if_mine,
    member_key,
    mediators_prefix,
    members_prefix,
    owners_prefix,
    parse_owner_key,
)

logger = logging.getLogger(__name__)

TTL_S = 5
# After a failed keep-alive, try again this soon (bounded by the interval): the lease is still
# provable for a while and every success extends it.
RETRY_S = 0.25


class NoLease(Exception):
    """This streamer cannot prove its etcd lease now: it writes nothing (UNAVAILABLE)."""


@dataclass
class StreamerSession:
    """A streamer's standing in etcd: one lease at a time kept alive, its member record, its keys.

    `on_lapse(keys)` is called (synchronously, on the event loop) with the owner keys held when
    the lease stops being provable (keep-alives failing) or is gone; the streamer closes their
    files. While merely unprovable the records may still exist: a keep-alive that succeeds later
    makes the same keys writable again (the lease, and so its records, never ended)."""

    etcd: Etcd
    cluster: str
    streamer_id: str
    addr: str
    on_lapse: Callable[[list[str]], None]
    ttl_s: int = TTL_S
    drift: float = DRIFT
    margin_s: float = MARGIN_S
    clock: Callable[[], float] = time.monotonic
    holdings: Holdings | None = None
    keepalives: int = 0  # answered keep-alives, all leases
    _claims: dict[str, asyncio.Future[ClaimOutcome]] = field(default_factory=dict)
    _timer: asyncio.TimerHandle | None = None
    _provable: bool = False
    lease_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Called (synchronously, on the event loop) with True when the lease becomes provable and with
    # False when it stops being so: the streamer's readiness follows it.
    on_provable: Callable[[bool], None] = lambda provable: None

    @property
    def provable(self) -> bool:
        """Whether this streamer's lease is proven now, as the keep-alives and the lapse timer
        last found (readiness; each write checks `may_write` itself)."""
        return self._provable

    def _set_provable(self, provable: bool) -> None:
        if provable != self._provable:
            self._provable = provable
            self.on_provable(provable)

    # ---- the write path ----------------------------------------------------------------------

    def key(self, path: str, filename: str) -> str:
        return self.holdings.key(path, filename) if self.holdings is not None else ""

    def may_write(self, path: str, filename: str) -> bool:
        holdings = self.holdings
        return holdings is not None and holdings.may_write(holdings.key(path, filename), self.clock())

    async def acquire(self, path: str, filename: str) -> ClaimOutcome:
        """Make sure this streamer holds the key (claiming it in etcd if needed). Owned: write now
        (check `may_write` right before each write all the same); NotOwner names the holder;
        Blocked: a delete of our own record is unresolved (UNAVAILABLE for now). NoLease when the
        lease cannot be proven; EtcdUnavailable when the claim's outcome is unknown."""
        holdings = self.holdings
        if holdings is None:
            raise NoLease("no etcd lease yet")
        key = holdings.key(path, filename)
        admit = holdings.admit(key, self.clock())
        if admit is Admit.WRITE:
            return Owned(holdings.held[key])
        if admit is Admit.NO_LEASE:
            raise NoLease("the etcd lease cannot be proven now")
        if admit is Admit.WAIT_CLAIM:
            return await asyncio.shield(self._claims[key])
        txn = holdings.claim(key)
        future: asyncio.Future[ClaimOutcome] = asyncio.get_running_loop().create_future()
        self._claims[key] = future
        try:
            try:
                result = await self.etcd.txn(txn)
            except LeaseGone:
                holdings.claim_unknown(key)
                self._lease_gone(holdings)
                raise NoLease("the etcd lease is gone") from None
            except BaseException:
                holdings.claim_unknown(key)
                raise
            outcome = holdings.claimed(key, result)
            if isinstance(outcome, Blocked):
                await self._redo_releases(holdings, key)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else EtcdUnavailable("claim cancelled"))
                future.exception()  # retrieved here: waiters (if any) still get it
            raise
        finally:
            if self._claims.get(key) is future:
                del self._claims[key]

    async def release(self, path: str, filename: str) -> bool:
        """Let the key go after its last write (the caller has closed its file): the guarded
        delete. False if it was not held. An unanswered delete is sent again by `run()`."""
        holdings = self.holdings
        if holdings is None:
            return False
        key = holdings.key(path, filename)
        txn = holdings.release(key)
        if txn is None:
            return False
        await self._send_release(holdings, key, txn.compare[1].value)
        return True

    async def _send_release(self, holdings: Holdings, key: str, revision: int) -> None:
        try:
            await self.etcd.txn(delete_if_mine(key, holdings.lease, revision))
        except EtcdUnavailable as exc:
            logger.warning("release of %s not confirmed (%s): sent again later", key, exc)
            return
        except LeaseGone:
            pass  # the record went with the lease
        holdings.released(key, revision)

    async def _redo_releases(self, holdings: Holdings, key: str) -> None:
        for revision in sorted(holdings.doomed.get(key, ())):
            await self._send_release(holdings, key, revision)

    # ---- the lease ---------------------------------------------------------------------------

    def _lapse(self, holdings: Holdings, why: str) -> None:
        if self._provable:
            self._set_provable(False)
            keys = list(holdings.held)
            logger.warning("etcd lease %x %s: writing nothing, closing %d files", holdings.lease, why, len(keys))
            self.on_lapse(keys)

    def _lease_gone(self, holdings: Holdings) -> None:
        keys = list(holdings.held)
        holdings.lease_gone()
        self._set_provable(False)
        logger.warning("etcd lease %x is gone: writing nothing, closing %d files", holdings.lease, len(keys))
        if keys:
            self.on_lapse(keys)  # closing files already closed at a lapse does nothing
        if self.holdings is holdings:
            self.holdings = None

    def _renewed(self, holdings: Holdings, sent_at: float, ttl_s: int) -> None:
        holdings.clock.renewed(sent_at, ttl_s)
        if holdings.clock.valid(self.clock()):
            self._set_provable(True)
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, holdings.clock.until - self.clock())
        self._timer = asyncio.get_running_loop().call_later(delay + 0.001, self._check, holdings)

    def _check(self, holdings: Holdings) -> None:
        self._timer = None
        if holdings.clock.valid(self.clock()):
            delay = max(0.0, holdings.clock.until - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay + 0.001, self._check, holdings)
        else:
            self._lapse(holdings, "cannot be proven (no keep-alive answered in time)")

    async def _new_lease(self) -> Holdings:
        delay = RETRY_S
        while True:
            try:
                granted = await self.etcd.grant(self.ttl_s)
                holdings = Holdings(self.cluster, self.streamer_id, granted.lease,
                                    LeaseClock(drift=self.drift, margin_s=self.margin_s))
                self._set_provable(False)
                self._renewed(holdings, granted.sent_at, granted.ttl_s)
                await self.etcd.put(member_key(self.cluster, self.streamer_id), self.addr, granted.lease)
                logger.info("etcd lease %x granted for %ds; member %s at %s", granted.lease, granted.ttl_s,
                            self.streamer_id, self.addr)
                return holdings
            except (EtcdUnavailable, LeaseGone) as exc:
                logger.warning("no etcd lease yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.ttl_s / KEEPALIVES_PER_TTL)

    async def run(self) -> None:
        """Hold a lease for ever: grant, register, keep alive; a new lease when it is gone."""
        try:
            while True:
                holdings = await self._new_lease()
                self.holdings = holdings
                self.lease_changed.set()
                self.lease_changed = asyncio.Event()
                await self._keep(holdings)
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _keep(self, holdings: Holdings) -> None:
        interval = self.ttl_s / KEEPALIVES_PER_TTL
        stream = self.etcd.keep_alive(holdings.lease)
        try:
            while True:
                try:
                    sent_at, ttl = await stream.once(timeout_s=interval)
                except EtcdUnavailable as exc:
                    logger.debug("keep-alive failed: %s", exc)
                    await asyncio.sleep(min(RETRY_S, interval))
                    continue
                except LeaseGone:
                    ttl, sent_at = 0, self.clock()
                if ttl <= 0:
                    self._lease_gone(holdings)
                    return
                self.keepalives += 1
                self._renewed(holdings, sent_at, ttl)
                for key in list(holdings.doomed):
                    await self._redo_releases(holdings, key)
                await asyncio.sleep(max(0.0, sent_at + interval - self.clock()))
        finally:
            stream.close()

    async def close(self) -> None:
        """After the streamer closed every file: revoke the lease (its records go at once)."""
        holdings, self.holdings = self.holdings, None
        if holdings is not None and not holdings.clock.lost:
            try:
                await self.etcd.revoke(holdings.lease)
            except (EtcdUnavailable, LeaseGone) as exc:
                logger.warning("could not revoke etcd lease %x (%s): its records go when it expires",
                               holdings.lease, exc)


@dataclass
class ClusterView:
    """A mediator's view of the cluster in etcd: members (id -> addr) and owners ((path, filename)
    -> streamer id), listed then followed by a watch. It may lag etcd: a streamer refuses a key it
    does not own and names the owner, so a stale view costs a retry, never a second writer."""

    etcd: Etcd
    cluster: str
    members: dict[str, str] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    mediators: dict[str, str] = field(default_factory=dict)  # id -> addr (status only)
    revision: int = 0
    loaded: bool = False  # listed at least once
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, key: str, value: str | None) -> None:
        members, owners = members_prefix(self.cluster), owners_prefix(self.cluster)
        mediators = mediators_prefix(self.cluster)
        if key.startswith(mediators):
            name = key[len(mediators):]
            if value is None:
                self.mediators.pop(name, None)
            else:
                self.mediators[name] = value
        elif key.startswith(members):
            name = key[len(members):]
            if value is None:
                self.members.pop(name, None)
            else:
                self.members[name] = value
        elif key.startswith(owners):
            file_key = parse_owner_key(self.cluster, key)
            if value is None:
                self.owners.pop(file_key, None)
            else:
                self.owners[file_key] = value

    async def refresh(self) -> None:
        """List everything once (the start of `run`, and after a broken watch)."""
        snapshot = await self.etcd.get_prefix(cluster_prefix(self.cluster))
        self.members.clear()
        self.owners.clear()
        self.mediators.clear()
        for key, record in snapshot.records.items():
            self.apply(key, record.value)
        self.revision = snapshot.revision
        self.loaded = True
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        """Keep the view current for ever: list, watch from the listing's revision, list again
        (with backoff) when the watch breaks."""
        delay = RETRY_S
        prefix = cluster_prefix(self.cluster)
        while True:
            try:
                await self.refresh()
                delay = RETRY_S
                async for events in self.etcd.watch_prefix(prefix, self.revision):
                    for event in events:
                        self.apply(event.key, event.record.value if event.record is not None else None)
                        self.revision = max(self.revision, event.revision)
                    self._changed()
            except EtcdUnavailable as exc:
                logger.warning("etcd view of cluster %s interrupted (%s); listing again in %.1fs",
                               self.cluster, exc, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)


def refusal(outcome: NotOwner) -> str:
    """The message of a streamer's definite refusal of a key it does not own."""
    if outcome.same_id_other_lease:
        return "held by this streamer's previous run until its etcd lease ends"
    return f"owned by streamer {outcome.owner}"
