"""A second writer from outside (issue 7, item 2): while the mediator routes a load, a client sends
the same keys straight to every clustered streamer (plaintext, no token). Each of its writes gets
FAILED_PRECONDITION and none reaches a file; the load through the mediator loses nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from faultnodes import Sender, load_with_fault, mediator, procs, streamer, until, wait_live
from figures import Figures, Row
from history import Driver

pytestmark = pytest.mark.faults

KEYS = [f"direct/k{i}" for i in range(6)]
ROGUE_WRITES = 300


def test_writes_straight_to_clustered_streamers_are_refused(tmp_path: Path, figures: Figures) -> None:
    roots = {f"s{i}": tmp_path / f"s{i}" for i in range(2)}
    codes: Counter[str] = Counter()
    with procs() as started:
        med = mediator(started)
        nodes = [streamer(started, name, root, med.address) for name, root in roots.items()]
        wait_live(med.address, list(roots))

        async def rogue(driver: Driver) -> None:
            await until("every key written", lambda: all(driver.acked_since(0, [k]) for k in KEYS), 10)
            senders = [Sender(node.address, 5.0) for node in nodes]
            try:
                for n in range(ROGUE_WRITES):
                    key = KEYS[n % len(KEYS)]
                    path, _, filename = key.rpartition("/")
                    codes[await senders[n % len(senders)](path, filename, f"rogue#{n}")] += 1
            finally:
                for sender in senders:
                    await sender.close()

        run = load_with_fault(med.address, KEYS, roots, rogue)
    verdict = run.verdict
    rogue_written = [w for w in verdict.unsent if w.text.startswith("rogue#")]
    row = Row.of("direct writes to clustered streamers during load", verdict)
    figures.add(Row(row.scenario, row.acknowledged, row.lost, row.duplicated, row.unacked_written,
                    row.two_writer + len(rogue_written), None))
    assert dict(codes) == {"FAILED_PRECONDITION": ROGUE_WRITES}, dict(codes)
    assert not rogue_written, f"{len(rogue_written)} direct writes reached a file, e.g. {rogue_written[:3]}"
    assert verdict.problems() == []
    assert not [op for op in run.driver.ops if op.outcome != "ok"]
