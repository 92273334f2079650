"""Kill faults under load: a streamer SIGKILLed ten times (restarted each time), the mediator SIGKILLed
and restarted with and without -lease-file. Nothing acknowledged is lost, no key has two writers,
writes resume within the stated bounds."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from faultnodes import (
    SURELY_EXPIRED_S,
    mediator,
    owners,
    procs,
    streamer,
    until,
    wait_live,
    wait_placing,
    load_with_fault,
)
from figures import Figures, Row
from history import Driver, resume_s

pytestmark = pytest.mark.faults

KEYS = [f"app/k{i:02d}" for i in range(12)]
# The mediator fails an owner over once its lease has surely expired (SURELY_EXPIRED_S after its
# last ping, which came at most an interval before the kill); then the key's waiting requests go
# to the new owner. Two more seconds for a loaded 2-core machine.
FAILOVER_BOUND_S = SURELY_EXPIRED_S + 2.0


def test_a_streamer_sigkilled_ten_times_under_load(tmp_path: Path, figures: Figures) -> None:
    roots = {f"s{i}": tmp_path / f"s{i}" for i in range(3)}
    with procs() as started:
        # Requests wait up to 5s for a failed owner's keys (default: about the fail-over time,
        # 0.95s here), so a machine slowed by other work does not turn a fail-over into errors.
        med = mediator(started, "-handoff-wait", "5s")
        nodes = {name: streamer(started, name, root, med.address) for name, root in roots.items()}
        wait_live(med.address, list(roots))
        resumes: list[float] = []

        async def kill_ten_times(driver: Driver) -> None:
            for round_ in range(10):
                name = f"s{round_ % 3}"
                await until("the victim owns keys", lambda: name in owners(med.address).values(), 10)
                mine = [k for k, owner in owners(med.address).items() if owner == name]
                killed_at = time.monotonic()
                nodes[name].proc.send_signal(signal.SIGKILL)
                nodes[name].proc.wait()
                await until(f"{name}'s keys {mine} acknowledged again after the kill",
                            lambda: all(driver.acked_since(killed_at, [k]) for k in mine), FAILOVER_BOUND_S + 5)
                # Until every one of the victim's keys was acknowledged again.
                resumes.append(max(resume_s(driver.ops, killed_at, [k]) or float("inf") for k in mine))
                nodes[name] = await asyncio.to_thread(streamer, started, name, roots[name], med.address)
                await asyncio.to_thread(wait_live, med.address, [name])

        run = load_with_fault(med.address, KEYS, roots, kill_ten_times, settle_s=1.0)
    verdict = run.verdict
    figures.add(Row.of("streamer SIGKILL x10 under load", verdict, max(resumes) if resumes else None))
    assert verdict.problems() == []
    failed = [op for op in run.driver.ops if op.outcome != "ok"]
    assert not failed, f"{len(failed)} writes failed, e.g. {[(o.key, o.seq, o.code) for o in failed[:5]]}"
    assert len(resumes) == 10 and max(resumes) < FAILOVER_BOUND_S, resumes


@pytest.mark.parametrize("interval_s", [1, 5], ids=["1s", "5s"])
@pytest.mark.parametrize("ledger", [False, True], ids=["no-lease-file", "lease-file"])
def test_the_mediator_sigkilled_and_restarted_under_load(tmp_path: Path, figures: Figures, ledger: bool,
                                                         interval_s: int) -> None:
    """Issue item 6: a restarted mediator resumes writes of existing keys within one health interval."""
    interval = f"{interval_s}s"
    waited_s = 3 * interval_s + 15  # long enough to measure today's code too, which takes several intervals
    roots = {f"s{i}": tmp_path / f"s{i}" for i in range(3)}
    extra = ["-lease-file", str(tmp_path / "mediator.lease")] if ledger else []
    with procs() as started:
        first = mediator(started, *extra, interval=interval)  # port 0; the restart reuses the port it reported
        port = first.port
        for name, root in roots.items():
            streamer(started, name, root, first.address)
        wait_live(first.address, list(roots))
        wait_placing(first.address, waited_s)  # the first start's grace is not what is measured
        restarted: list[float] = []

        async def kill_and_restart(driver: Driver) -> None:
            await until("every key written", lambda: all(driver.acked_since(0, [k]) for k in KEYS), 10)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait()
            await asyncio.to_thread(lambda: mediator(started, *extra, port=port, interval=interval))
            restarted.append(time.monotonic())  # it logged "listening on"
            await until("a write acknowledged by the restarted mediator",
                        lambda: driver.acked_since(restarted[0]) > 0, waited_s)
            await until("every key written again", lambda: all(driver.acked_since(restarted[0], [k]) for k in KEYS),
                        waited_s)

        run = load_with_fault(f"127.0.0.1:{port}", KEYS, roots, kill_and_restart, settle_s=1.0)
    verdict = run.verdict
    resume = resume_s(run.driver.ops, restarted[0]) if restarted else None
    figures.add(Row.of(f"mediator SIGKILL + restart ({'with' if ledger else 'without'} -lease-file, "
                       f"-health-interval {interval})", verdict, resume))
    assert verdict.problems() == []
    refused = [op for op in run.driver.ops if op.outcome == "refused"]
    assert not refused, [(o.key, o.seq, o.code) for o in refused[:5]]
    assert resume is not None and resume < interval_s, f"writes resumed {resume:.2f}s after the restart"
