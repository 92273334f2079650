"""Pure rotation decisions: when a file is rotated and how a blob of lines splits across files.

The rotation rule (`-size S`; README.md, "Rotation loses nothing"): before appending n bytes to a file
of size f > 0, if f + n > S, the file is rotated first. Applied line by line this gives: every rotated
file holds at most S bytes or exactly one longer line, and no line is split. `plan_chunk` applies the
same rule to a whole blob of lines at once with C-speed searches, and tests check it against
`plan_append` line by line. Rotated names are logstream/keys/names.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from logstream.config.units import UNLIMITED


def plan_append(size: int, incoming: int, limit: int) -> bool:
    """Whether a file of `size` bytes is rotated before `incoming` more bytes are appended."""
    return limit != UNLIMITED and size > 0 and size + incoming > limit


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of a blob go to one file; `rotate` first when set."""

    start: int
    end: int
    rotate: bool


def plan_chunk(data: bytes, size: int, limit: int) -> list[Segment]:
    """How `data` (whole lines, each ended by b"\\n") is appended to a file of `size` bytes.

    The same result as `plan_append` applied to each line in turn, with adjacent lines that go to
    the same file merged into one segment (one write).
    """
    total = len(data)
    if limit == UNLIMITED or size + total <= limit:
        return [Segment(0, total, False)]
    segments: list[Segment] = []
    start, rotate = 0, False
    while start < total:
        if size + (total - start) <= limit:
            end = total
        else:
            room = limit - size
            # The last newline such that the lines in [start, end) fit the room left.
            end = data.rfind(b"\n", start, start + room) + 1 if room > 0 else 0
            if end <= start:
                if size > 0:  # not even the next line fits: start a fresh file
                    size, rotate = 0, True
                    continue
                end = data.index(b"\n", start) + 1  # one line longer than the limit, alone
        segments.append(Segment(start, end, rotate))
        size += end - start
        start, rotate = end, False
    return segments
