"""A streamer cut off from its mediator for longer than its lease, under load: paused (SIGSTOP,
then SIGCONT) or partitioned (a proxy black-holes the traffic both ways, then heals). It writes
nothing once its lease is over (its root is checked), its keys move to the others, nothing
acknowledged is lost, no key has two writers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faultnodes import (
    INTERVAL_S,
    SURELY_EXPIRED_S,
    load_with_fault,
    mediator,
    owners,
    procs,
    status,
    streamer,
    until,
    wait_live,
)
from figures import Figures, Row
from history import Driver, resume_s
from proxy import Proxy

pytestmark = pytest.mark.faults

KEYS = [f"iso/k{i:02d}" for i in range(12)]
CUT_S = 3.0  # how long the victim is cut off: several leases (0.45s each)


def sizes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*.log")}


@dataclass
class Facts:
    """What the fault coroutine saw, for the checks afterwards."""

    mine: list[str] = field(default_factory=list)  # the victim's keys when it was cut off
    cut_at: float = 0.0
    restore_at: float = 0.0
    after_lease: dict[str, int] = field(default_factory=dict)  # its files' sizes once its lease was over
    before_restore: dict[str, int] = field(default_factory=dict)


def appended(root: Path, before: dict[str, int]) -> list[str]:
    """Lines added to the files under `root` since their sizes were `before`."""
    lines: list[str] = []
    for path in root.rglob("*.log"):
        with path.open("rb") as file:
            file.seek(before.get(str(path.relative_to(root)), 0))
            lines += file.read().decode("utf-8", "replace").splitlines()
    return lines


def run_isolation(tmp_path: Path, figures: Figures, scenario: str, via_proxy: bool,
                  cut: Callable[[int, Proxy | None], None], restore: Callable[[int, Proxy | None], None]) -> None:
    roots = {f"s{i}": tmp_path / f"s{i}" for i in range(3)}
    victim = "s1"
    with procs() as started, Proxy() as to_victim:
        med = mediator(started, "-forward-timeout", "1s")
        to_mediator = Proxy(med.address)
        try:
            nodes = {}
            for name, root in roots.items():
                if name == victim and via_proxy:
                    nodes[name] = streamer(started, name, root, to_mediator.address, "-advertise", to_victim.address)
                    to_victim.target = nodes[name].address
                else:
                    nodes[name] = streamer(started, name, root, med.address)
            wait_live(med.address, list(roots))
            if via_proxy:  # the mediator reaches the victim only through the proxy
                addrs = {s["id"]: s["addr"] for s in (status(med.address) or {"streamers": []})["streamers"]}
                assert addrs.get(victim) == to_victim.address, addrs
            pid = nodes[victim].proc.pid
            facts = Facts()

            async def isolate(driver: Driver) -> None:
                await until("the victim owns keys", lambda: victim in owners(med.address).values(), 10)
                mine = [k for k, owner in owners(med.address).items() if owner == victim]
                cut_at = time.monotonic()
                cut(pid, to_victim)
                if via_proxy:
                    to_mediator.partition()
                # Its lease is surely over by now (the last ping came at most an interval before).
                await asyncio.sleep(SURELY_EXPIRED_S + INTERVAL_S)
                after_lease = sizes(roots[victim])
                await until(f"the victim's keys {mine} acknowledged by the others",
                            lambda: all(driver.acked_since(cut_at + SURELY_EXPIRED_S, [k]) for k in mine), CUT_S)
                await asyncio.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
                facts.after_lease, facts.before_restore = after_lease, sizes(roots[victim])
                facts.restore_at = time.monotonic()
                restore(pid, to_victim)
                if via_proxy:
                    to_mediator.heal()
                facts.mine, facts.cut_at = mine, cut_at
                await asyncio.to_thread(wait_live, med.address, [victim], 15)

            run = load_with_fault(med.address, KEYS, roots, isolate, settle_s=1.0)
        finally:
            to_mediator.close()
    verdict = run.verdict
    # Until every one of the victim's keys was acknowledged again (a write sent after the cut).
    resume = max((resume_s(run.driver.ops, facts.cut_at, [k]) or float("inf") for k in facts.mine), default=None)
    figures.add(Row.of(scenario, verdict, resume))
    assert verdict.problems() == []
    assert facts.before_restore == facts.after_lease, \
        f"the victim wrote after its lease was over: {facts.after_lease} -> {facts.before_restore}"
    # Whatever it wrote after it came back is of operations sent after it came back (a forward
    # held up by the cut and delivered late must be refused: its lease is over).
    sent_before = {op.text for op in run.driver.ops if op.start < facts.restore_at}
    stale = [line for line in appended(roots[victim], facts.before_restore) if line in sent_before]
    assert not stale, f"the victim wrote {len(stale)} lines sent before it came back, e.g. {stale[:3]}"
    refused = [op for op in run.driver.ops if op.outcome == "refused"]
    assert not refused, [(o.key, o.seq, o.code) for o in refused[:5]]


def _stop(pid: int, proxy: Proxy | None) -> None:
    os.kill(pid, signal.SIGSTOP)


def _cont(pid: int, proxy: Proxy | None) -> None:
    os.kill(pid, signal.SIGCONT)


def _partition(pid: int, proxy: Proxy | None) -> None:
    assert proxy is not None
    proxy.partition()


def _heal(pid: int, proxy: Proxy | None) -> None:
    assert proxy is not None
    proxy.heal()


def test_a_streamer_paused_past_its_lease(tmp_path: Path, figures: Figures) -> None:
    run_isolation(tmp_path, figures, f"streamer SIGSTOP {CUT_S:.0f}s (lease 0.45s), SIGCONT", False, _stop, _cont)


def test_a_streamer_partitioned_past_its_lease(tmp_path: Path, figures: Figures) -> None:
    run_isolation(tmp_path, figures, f"partition mediator/streamer {CUT_S:.0f}s (both ways), healed", True,
                  _partition, _heal)
