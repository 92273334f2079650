"""etcd mode: a mediator's record `/logstream/<cluster>/mediators/<id>` -> its address, on its own lease, so status can list mediators."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from logstream.coord.etcd import Etcd, EtcdUnavailable, LeaseGone
from logstream.coord.protocol import KEEPALIVES_PER_TTL, mediator_key

logger = logging.getLogger(__name__)

TTL_S = 5
RETRY_S = 0.5


@dataclass
class Presence:
    """Keeps this mediator's record alive while it runs (`run`, a supervised task); `close` revokes
    it. Nothing depends on it for safety: it only tells status which mediators exist."""

    etcd: Etcd
    cluster: str
    mediator_id: str
    addr: str
    ttl_s: int = TTL_S
    lease: int = 0

    async def run(self) -> None:
        interval = self.ttl_s / KEEPALIVES_PER_TTL
        while True:
            try:
                granted = await self.etcd.grant(self.ttl_s)
                self.lease = granted.lease
                await self.etcd.put(mediator_key(self.cluster, self.mediator_id), self.addr, granted.lease)
                logger.info("etcd: mediator %s at %s recorded on lease %x", self.mediator_id, self.addr, granted.lease)
                stream = self.etcd.keep_alive(granted.lease)
                try:
                    while True:
                        _sent, ttl = await stream.once(timeout_s=interval)
                        if ttl <= 0:
                            raise LeaseGone(f"lease {granted.lease:x}")
                        await asyncio.sleep(interval)
                finally:
                    stream.close()
            except (EtcdUnavailable, LeaseGone) as exc:
                logger.debug("etcd: mediator record interrupted (%s); again in %.1fs", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        lease, self.lease = self.lease, 0
        if lease:
            try:
                await self.etcd.revoke(lease)
            except (EtcdUnavailable, LeaseGone):
                pass  # it goes when its lease expires
