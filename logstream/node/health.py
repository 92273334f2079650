"""Liveness and readiness of a node, published to grpc health (with List) and read by /healthz, /readyz.

- live: the process and its supervised background tasks are well (and its event loop turns).
  grpc health service `""` and every service but the write service; HTTP `/healthz`.
  A process supervisor restarts a node that stays not live.
- ready: it can take writes now (a streamer: standalone or leased, its root usable; a mediator:
  at least one live streamer). grpc health service `api.LogStreamer`; HTTP `/readyz`.
  A load balancer sends writes only to a ready node; nothing restarts it for being not ready.

Why the write service alone follows readiness: a mediator with no streamer must still take
registrations (`api.Register`) and answer `api.ClusterStatus`, and a streamer without a lease must
still answer the pings that grant it one (`api.Pinger`), or neither could ever become ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

logger = logging.getLogger(__name__)

# The service that takes writes on both roles: its grpc health status is the node's readiness.
WRITE_SERVICE = "api.LogStreamer"
# How often readiness is evaluated again (a lease lapses without any event to react to).
TICK_S = 0.25
# The event loop has not run the tick for this long: the node is stuck, not live.
STALL_S = 10.0

# None when well; else the reason, one line.
Check = Callable[[], "str | None"]


class HealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    """grpc's health service, plus List, and every Watch stream ends once graceful shutdown begins:
    a watcher (a streamer watching its mediator) must not hold the server's grace, and the end tells
    it at once that this node is going away."""

    def __init__(self) -> None:
        super().__init__()
        self._stopping = asyncio.Event()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        watch = asyncio.ensure_future(super().Watch(request, context))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({watch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, stopping):
                task.cancel()
            await asyncio.gather(watch, stopping, return_exceptions=True)

    async def List(self, request: health_pb2.HealthListRequest,
                   context: grpc.aio.ServicerContext) -> health_pb2.HealthListResponse:
        """Every service this node reports and its status (grpc_health's aio servicer lacks List)."""
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status) for name, status in self.statuses().items()})

    def statuses(self) -> dict[str, int]:
        return dict(self._server_status)

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        self._stopping.set()


class OnPurpose(str):
    """A reason for not being ready that an operator caused on purpose (e.g. every streamer left in a
    clean stop): logged as information, not as a warning."""


@dataclass(frozen=True)
class Verdict:
    """What a node says about itself at one instant; None: well, else the reason."""

    live: str | None
    ready: str | None

    def statuses(self, services: Sequence[str]) -> dict[str, int]:
        """The grpc health status of `""` and of each service: all follow liveness, the write
        service follows readiness too (see the module docstring). Pure."""
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        live = serving if self.live is None else not_serving
        ready = serving if self.live is None and self.ready is None else not_serving
        statuses = {name: live for name in ("", *services)}
        if WRITE_SERVICE in statuses:
            statuses[WRITE_SERVICE] = ready
        return statuses


def judge(live: str | None, ready: str | None) -> Verdict:
    """Readiness implies liveness: a node that is not live is not ready either, for that reason. Pure."""
    return Verdict(live, live if live is not None else ready)


class NodeHealth:
    """Evaluates a node's liveness and readiness and publishes them to its grpc health servicer.

    `publish()` runs on the event loop (at start, at every change the node reports, and every
    TICK_S from `watch`, a task its TaskSupervisor keeps); `live()` and `ready()` are read by the
    HTTP servers' threads and only read the last published verdict, so they never touch the
    loop's state from another thread. Liveness also fails when the loop has not published for
    STALL_S: a stuck loop answers no request."""

    def __init__(self, live: Check, ready: Check, clock: Callable[[], float] = time.monotonic) -> None:
        self._live = live
        self._ready = ready
        self._clock = clock
        self._target: tuple[health_aio.HealthServicer, tuple[str, ...]] | None = None
        self._published: dict[str, int] | None = None
        self.verdict = Verdict("starting", "starting")
        self._at = clock()

    def attach(self, servicer: health_aio.HealthServicer, services: Sequence[str]) -> None:
        """Publish to `servicer` from now on: `""` and `services` (see `Verdict.statuses`)."""
        self._target = (servicer, tuple(services))
        self._published = None

    def evaluate(self) -> Verdict:
        return judge(self._live(), self._ready())

    async def publish(self) -> Verdict:
        verdict = self.evaluate()
        previous, self.verdict, self._at = self.verdict, verdict, self._clock()
        # Logged at a transition only: a reason's text may change at every tick ("lapsed 2.5s ago").
        if (verdict.ready is None) != (previous.ready is None) and previous.ready != "starting":
            if verdict.ready is None:
                logger.info("ready: taking writes")
            elif isinstance(verdict.ready, OnPurpose):
                logger.info("not ready: %s", verdict.ready)
            else:
                logger.warning("not ready: %s", verdict.ready)
        if self._target is not None:
            servicer, services = self._target
            statuses = verdict.statuses(services)
            if statuses != self._published:
                self._published = statuses
                for name, status in statuses.items():
                    await servicer.set(name, status)
        return verdict

    async def watch(self, tick_s: float = TICK_S) -> None:
        """Publish every `tick_s` until cancelled (long-lived work for the node's TaskSupervisor)."""
        while True:
            await self.publish()
            await asyncio.sleep(tick_s)

    def live(self) -> str | None:
        """For /healthz (any thread): the last verdict's liveness, or a stalled loop."""
        stalled_s = self._clock() - self._at
        if stalled_s > STALL_S:
            return f"event loop stalled: no health tick for {stalled_s:.0f}s"
        return self.verdict.live

    def ready(self) -> str | None:
        """For /readyz (any thread)."""
        return self.live() or self.verdict.ready
