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
    return head + body
