"""The fault suite's result rows and the Markdown table they make ("What it survives")."""

from __future__ import annotations

from dataclasses import dataclass

from history import Verdict


@dataclass(frozen=True)
class Row:
    scenario: str
    acknowledged: int
    lost: int
    duplicated: int
    unacked_written: int
    two_writer: int
    resume_s: float | None

    @classmethod
    def of(cls, scenario: str, verdict: Verdict, resume_s: float | None = None) -> Row:
        return cls(scenario, verdict.acknowledged, len(verdict.lost), verdict.duplicated,
                   verdict.unacked_written, verdict.two_writer, resume_s)


ROWS: list[Row] = []


class Figures:
    """What a scenario calls to record its row (recorded before its assertions, so a failing
    scenario still shows its figures)."""

    def add(self, row: Row) -> None:
        ROWS.append(row)


def table(rows: list[Row]) -> str:
    head = ("| scenario | acknowledged | lost | duplicated | written, not acknowledged | two-writer instants "
            "| resume |\n|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r.scenario} | {r.acknowledged:,} | {r.lost} | {r.duplicated} | {r.unacked_written} | {r.two_writer} "
        f"| {'-' if r.resume_s is None else f'{r.resume_s:.2f} s'} |\n" for r in rows)
    return head + body + RESUME_NOTE


RESUME_NOTE = (
    "\nResume: for a streamer fault (kill, pause, partition), seconds from the fault until every key the "
    "streamer held was written again (by a write sent after the fault); for a mediator restart, from the "
    "new mediator listening to its first acknowledged write; for a disk fault, from the root's return to "
    "the first acknowledged write. Two-writer instants: writes that surely came after another streamer "
    "had written a later line of the same key, plus writes by an outside client that reached a file.\n"
)
