"""etcd mode's two ends of a forward: the streamer's write gate per key, the mediator's choice of streamer and refusal reading.

Not wired into the servers yet (see docs/cluster-protocol.md, "etcd mode"). A streamer refuses a
key another streamer owns with FAILED_PRECONDITION and names the owner in the trailing metadata
`OWNER_HEADER` (decided on code and metadata, never on message text); a mediator reads it with
`owner_named` and retries there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import grpc

from logstream.coord.ownership import NoLease, StreamerSession
from logstream.coord.protocol import Blocked, ClaimOutcome, NotOwner, parse_owner_key
from logstream.keys.paths import FileKey
from logstream.keys.placement import place

OWNER_HEADER = "x-logstream-owner"
# Claims one request sends to etcd at once.
CLAIMS_IN_FLIGHT = 32


class NotOwnerHere(Exception):
    """A key this streamer does not own in etcd: FAILED_PRECONDITION, the owner in `OWNER_HEADER`
    (empty when the owner is this streamer's previous run: retry later)."""

    def __init__(self, key: tuple[str, str], owner: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.owner = owner

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((OWNER_HEADER, self.owner),) if self.owner else ()


class EtcdGate:
    """Whether this streamer may write keys now, claiming them in etcd on first use."""

    def __init__(self, session: StreamerSession) -> None:
        self.session = session

    async def admit(self, keys: Iterable[tuple[str, str]]) -> None:
        """Hold every key (claiming those not held yet) or raise: NotOwnerHere, NoLease (also for
        a key whose release is unresolved), EtcdUnavailable (a claim of unknown outcome). Claims
        go out concurrently (at most CLAIMS_IN_FLIGHT): a request naming many new keys waits for
        about one round trip per CLAIMS_IN_FLIGHT keys, not one per key. The first key (in the
        request's order) that cannot be held decides the refusal."""
        may_write = self.session.may_write
        claims = [key for key in dict.fromkeys(keys) if not may_write(*key)]
        if len(claims) <= 1:
            for path, filename in claims:
                self._refuse_unless_owned(path, filename, await self.session.acquire(path, filename))
            return
        slots = asyncio.Semaphore(CLAIMS_IN_FLIGHT)

        async def claim(path: str, filename: str) -> ClaimOutcome:
            async with slots:
                return await self.session.acquire(path, filename)

        outcomes = await asyncio.gather(*(claim(*key) for key in claims), return_exceptions=True)
        for (path, filename), outcome in zip(claims, outcomes):
            if isinstance(outcome, BaseException):
                raise outcome
            self._refuse_unless_owned(path, filename, outcome)

    async def release(self, keys: Iterable[tuple[str, str]]) -> int:
        """Let `keys` go after their last write (their files closed): the guarded deletes, at most
        CLAIMS_IN_FLIGHT at a time (each key's delete is independent of the others'). How many were held."""
        slots = asyncio.Semaphore(CLAIMS_IN_FLIGHT)

        async def release(path: str, filename: str) -> bool:
            async with slots:
                return await self.session.release(path, filename)

        return sum(await asyncio.gather(*(release(*key) for key in dict.fromkeys(keys))))

    @staticmethod
    def _refuse_unless_owned(path: str, filename: str, outcome: ClaimOutcome) -> None:
        if isinstance(outcome, NotOwner):
            if outcome.same_id_other_lease:
                raise NoLease(f"{path}/{filename} is held by this streamer's previous run until its "
                              "etcd lease ends")
            raise NotOwnerHere((path, filename), outcome.owner,
                               f"{path}/{filename} is owned by streamer {outcome.owner or '?'}")
        if isinstance(outcome, Blocked):
            raise NoLease(f"{path}/{filename} is being released by this streamer")

    def check(self, keys: Iterable[tuple[str, str]]) -> None:
        """Right before writing: every key still held and the lease still provable; else NoLease."""
        may_write = self.session.may_write
        for path, filename in keys:
            if not may_write(path, filename):
                raise NoLease(f"{path}/{filename}: the etcd lease cannot be proven now")

    @staticmethod
    def files_of(owner_keys: Sequence[str], cluster: str) -> list[tuple[str, str]]:
        """The (path, filename) pairs of owner keys (what `on_lapse` gives) for the writer to close."""
        return [parse_owner_key(cluster, key) for key in owner_keys]


def choose(key: FileKey, owners: Mapping[tuple[str, str], str], members: Iterable[str]) -> str | None:
    """Where a mediator sends `key`: its owner in the view, else a member by rendezvous hashing
    (which then claims it); None with no member at all."""
    owner = owners.get((key.path, key.filename))
    if owner is not None:
        return owner
    return place(key, members)


def owner_named(error: grpc.aio.AioRpcError) -> str | None:
    """The owner a streamer's FAILED_PRECONDITION refusal names, if it names one."""
    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    return owner_in(error.trailing_metadata()) or None


def owner_in(metadata: object) -> str:
    """The owner named in a refusal's trailing metadata (grpc's Metadata or pairs); "" if none."""
    for pair in metadata if isinstance(metadata, Iterable) else ():
        if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == OWNER_HEADER and isinstance(pair[1], str):
            return pair[1]
    return ""
