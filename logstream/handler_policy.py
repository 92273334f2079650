"""Pure decisions of the logging handler: a record's text as one bounded line, and the wait between tries."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Oversize = Literal["drop", "truncate"]
Newlines = Literal["keep", "escape"]

# The streamer's and the mediator's default -max-line (logstream/config/settings.py): longer lines
# are refused with INVALID_ARGUMENT, which would otherwise fail the whole batch they travel in.
DEFAULT_MAX_LINE_BYTES = 1_048_576
# Ends a truncated line, so a reader sees the record was cut (and by the handler, not the app).
TRUNCATED_MARKER = b" [truncated by logstream]"


def _cut(line: bytes, max_bytes: int) -> bytes:
    """`line` cut to at most `max_bytes` bytes ending with the marker, never inside a UTF-8 character."""
    keep = max(0, max_bytes - len(TRUNCATED_MARKER))
    # Step back over continuation bytes (0b10xxxxxx) so the cut lands on a character boundary.
    while 0 < keep < len(line) and line[keep] & 0xC0 == 0x80:
        keep -= 1
    return (line[:keep] + TRUNCATED_MARKER)[:max_bytes]


@dataclass(frozen=True)
class Shaped:
    """One record ready to buffer: `data` (None: dropped for its size) and whether a line was cut."""

    data: bytes | None
    cut: bool = False


def shape_record(text: str, max_line_bytes: int, oversize: Oversize = "drop",
                 newlines: Newlines = "keep") -> Shaped:
    """The bytes to send for one formatted record (ending in b"\\n"), or data=None to drop it.

    With `newlines="escape"` a multi-line record (a traceback) stays one line: "\\" becomes "\\\\",
    "\\n" and "\\r" become "\\n" and "\\r" written out. A line longer than `max_line_bytes` (the
    newline excluded, as the servers count) is dropped, or cut to fit and marked with
    TRUNCATED_MARKER when `oversize="truncate"`.
    """
    if max_line_bytes < 1:
        raise ValueError("max_line_bytes must be positive")
    if text.endswith("\n"):
        text = text[:-1]  # the line's own end, as a FileHandler's terminator
    if newlines == "escape":
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    data = text.encode("utf-8", "surrogateescape")
    lines = data.split(b"\n")
    if all(len(line) <= max_line_bytes for line in lines):
        return Shaped(data + b"\n")
    if oversize == "drop":
        return Shaped(None)
    cut = b"\n".join(line if len(line) <= max_line_bytes else _cut(line, max_line_bytes) for line in lines)
    return Shaped(cut + b"\n", cut=True)


def backoff_s(failures: int, first_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """The wait after `failures` consecutive failed tries: doubling from `first_s`, capped at `max_s`,
    with jitter in its upper half (many processes losing one cluster do not retry in step)."""
    if failures < 1:
        return 0.0
    ceiling = min(max_s, first_s * 2.0 ** min(failures - 1, 60))
    return ceiling * (0.5 + rand() / 2)


def records_through(records: Sequence[bytes], sent_lines: int) -> int:
    """How many of `records` (each ending in b"\\n", maybe holding more newlines) were surely written when
    a call reports `sent_lines` lines through: only whole records count, so a record cut mid-way is
    sent again (at-least-once) rather than skipped. Safe whether the count is of lines or of records."""
    through = 0
    for data in records:
        sent_lines -= data.count(b"\n")
        if sent_lines < 0:
            break
        through += 1
    return through
