"""The fault-history checker on hand-made histories: each validator finds what it must, and only that."""

from __future__ import annotations

import asyncio
from pathlib import Path

from history import (
    Driver,
    Op,
    SizeSampler,
    Written,
    check,
    file_order,
    line_text,
    outcome_of,
    read_roots,
    resume_s,
)


def op(key: str, seq: int, outcome: str = "ok", start: float | None = None, end: float | None = None) -> Op:
    t = float(seq) if start is None else start
    return Op(key, seq, line_text(key, seq, 4), outcome, t, t + 0.5 if end is None else end,  # type: ignore[arg-type]
              {"ok": "OK", "refused": "INVALID_ARGUMENT", "unknown": "UNAVAILABLE"}[outcome])


def w(root: str, o: Op, lo: float = float("-inf"), hi: float = float("inf"), complete: bool = True) -> Written:
    return Written(root, o.key + ".log", o.text, complete, lo, hi)


def test_a_clean_history_passes() -> None:
    ops = [op("a/k", n) for n in range(5)]
    verdict = check(ops, [w("r0", o) for o in ops])
    assert verdict.problems() == []
    assert (verdict.acknowledged, verdict.duplicated, verdict.unacked_written) == (5, 0, 0)


def test_missing_acknowledged_line_is_lost_but_missing_unknown_one_is_not() -> None:
    ops = [op("a/k", 0), op("a/k", 1), op("a/k", 2, "unknown"), op("a/k", 3, "refused")]
    verdict = check(ops, [w("r0", ops[0])])
    assert [o.seq for o in verdict.lost] == [1]
    assert verdict.unacked_written == 0 and verdict.refused == 1 and verdict.unknown == 1


def test_duplicates_are_counted_not_failed_and_unknown_written_is_counted() -> None:
    ops = [op("a/k", 0), op("a/k", 1, "unknown")]
    verdict = check(ops, [w("r0", ops[0]), w("r1", ops[0]), w("r1", ops[0]), w("r1", ops[1])])
    assert verdict.problems() == []
    assert verdict.duplicated == 2 and verdict.unacked_written == 1


def test_refused_line_on_disk_unsent_line_and_partial_lines_are_problems() -> None:
    ops = [op("a/k", 0, "refused"), op("a/k", 1)]
    written = [
        w("r0", ops[0]),
        w("r0", ops[1]),
        Written("r0", "k.log", "a/k#7|xxxx"),  # never sent
        Written("r0", "k.log", "garbage"),
        Written("r0", "k.log", ops[1].text[:6]),  # a cut-off copy of a sent line, newline present
        Written("r0", "k.log", ops[1].text, complete=False),  # no newline at the end of the file
    ]
    verdict = check(ops, written)
    assert [o.seq for o in verdict.refused_written] == [0]
    assert [x.text for x in verdict.unsent] == ["a/k#7|xxxx", "garbage"]
    assert len(verdict.partial) == 2
    assert len(verdict.problems()) == 3 + 0  # refused written, unsent, partial
    assert verdict.lost == ()  # the complete copy of line 1 counts


def test_a_key_that_moves_away_and_back_is_no_second_writer() -> None:
    ops = [op("a/k", n) for n in range(6)]
    # r0 writes 0-1, r1 writes 2-3, r0 (handed back) writes 4-5: times follow the sequence.
    written = [w(root, o, lo=o.start, hi=o.end) for root, o in
               [("r0", ops[0]), ("r0", ops[1]), ("r0", ops[4]), ("r0", ops[5]), ("r1", ops[2]), ("r1", ops[3])]]
    verdict = check(ops, written)
    assert verdict.stale == () and verdict.problems() == []


def test_a_write_after_another_root_wrote_a_later_line_is_a_second_writer() -> None:
    ops = [op("a/k", 0), op("a/k", 1, "unknown"), op("a/k", 2), op("a/k", 3)]
    written = [
        w("r0", ops[0], 0.0, 0.5),
        w("r1", ops[1], 1.0, 1.5),  # the retry of 1 on the new owner
        w("r1", ops[2], 2.0, 2.5),
        w("r1", ops[3], 3.0, 3.5),
        w("r0", ops[1], 10.0, 10.1),  # the paused old owner wakes up and writes its stale 1
    ]
    verdict = check(ops, written)
    assert verdict.two_writer == 1
    stale = verdict.stale[0]
    assert (stale.key, stale.seq, stale.root, stale.later_seq, stale.other_root) == ("a/k", 1, "r0", 3, "r1")
    assert verdict.duplicated == 1 and verdict.unacked_written == 1


def test_uncertain_write_times_are_no_evidence() -> None:
    ops = [op("a/k", 0, "unknown"), op("a/k", 1)]
    # r0's write of 0 may have happened before r1's write of 1: the windows overlap.
    written = [w("r1", ops[1], 1.0, 1.5), w("r0", ops[0], 0.0, 1.2)]
    assert check(ops, written).stale == ()
    assert check(ops, [w("r1", ops[1]), w("r0", ops[0])]).stale == ()


def test_outcomes_and_resume() -> None:
    assert [outcome_of(c) for c in ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                    "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL")] == \
        ["ok", "refused", "refused", "refused", "unknown", "unknown", "unknown"]
    ops = [op("a/k", 0, start=0, end=1), op("a/k", 1, "unknown", start=1, end=5),
           op("c/k", 0, start=1.5, end=3), op("b/k", 0, start=5, end=6), op("a/k", 2, start=5, end=7.5)]
    assert resume_s(ops, 2.0) == 4.0  # c/k's ack came after 2.0, but it was sent before
    assert resume_s(ops, 2.0, ["a/k"]) == 5.5
    assert resume_s(ops, 8.0) is None


def test_rotated_files_come_first_in_name_order() -> None:
    names = ["p/f.log", "p/f_20260101T000000.000002Z.log", "p/f_20260101T000000.000001Z_000001.log",
             "p/f_20260101T000000.000001Z.log", "p/g.log", "p/f_x.log"]
    ordered = [str(p) for p in sorted((Path(n) for n in names), key=file_order)]
    assert ordered == ["p/f_20260101T000000.000001Z.log", "p/f_20260101T000000.000001Z_000001.log",
                       "p/f_20260101T000000.000002Z.log", "p/f.log", "p/f_x.log", "p/g.log"]


def test_driver_records_and_reader_reads_back_with_write_times(tmp_path: Path) -> None:
    root = tmp_path / "r0"

    async def send(path: str, filename: str, line: str) -> str:
        if line.split("|")[0].endswith("#3"):
            return "INVALID_ARGUMENT"
        folder = root / path
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{filename}.log", "a") as file:
            file.write(line + "\n")
        await asyncio.sleep(0.002)
        return "OK"

    sampler = SizeSampler({"r0": root}, period_s=0.001).start()
    driver = Driver(["a/k1", "b/k2"], pad=8)
    asyncio.run(driver.run(send, asyncio.Event(), max_ops=20))
    sampler.stop()
    with (root / "b" / "k2.log").open("a") as file:
        file.write("b/k2#99|cut")
    written = read_roots({"r0": root}, sampler)
    verdict = check(driver.ops, written)
    assert verdict.acknowledged == 38 and verdict.refused == 2
    assert [x.text for x in verdict.partial] == ["b/k2#99|cut"]
    assert verdict.lost == () and verdict.unsent == () and verdict.stale == ()
    timed = [x for x in written if x.complete]
    assert all(x.lo < x.hi for x in timed) and sum(x.hi != float("inf") for x in timed) >= 30
