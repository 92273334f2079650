"""Pure rotation decisions: when to rotate, how a blob of lines splits across files, rotated names.

Rotation rule (DESIGN §4): before appending n bytes to a file of size f > 0, if f + n > S, the file
is rotated first. Applied line by line this gives: every rotated file holds at most S bytes or exactly
one longer line, and no line is split. `plan_chunk` applies the same rule to a whole blob of lines at
once with C-speed searches, and tests check it against `plan_append` line by line.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

UNLIMITED = -1

# `_YYYYMMDDTHHMMSS.ffffffZ` then, for a second rotation in the same microsecond, `_NNNNNN`.
_STAMP_CHARS = len("_20260101T000000.000000Z")
_COUNTER_DIGITS = 6
ROTATED_SUFFIX_MAX = _STAMP_CHARS + 1 + _COUNTER_DIGITS
_COUNTER_LIMIT = 10**_COUNTER_DIGITS
_ROTATED_TAIL = r"_(\d{8}T\d{6}\.\d{6})Z(?:_(\d{6}))?"
_ROTATED_STEM_RE = re.compile(r".*" + _ROTATED_TAIL + r"\Z", re.DOTALL)


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


def longest_line_over(data: bytes, max_line: int) -> int | None:
    """The start of the first line in `data` longer than `max_line` bytes (newline excluded), if any.

    `data` ends with b"\n". Looks only for the last newline in each window of max_line + 1 bytes,
    so the cost grows with len(data) / max_line rather than with the number of lines.
    """
    total, start = len(data), 0
    while total - start > max_line + 1:
        newline = data.rfind(b"\n", start, start + max_line + 1)
        if newline < 0:
            return start
        start = newline + 1
    return None


def format_stamp(micros: int) -> str:
    """UTC microseconds since the epoch as `YYYYMMDDTHHMMSS.ffffff`."""
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{fraction:06d}"


def parse_stamp(stamp: str) -> int:
    """The inverse of `format_stamp`."""
    import calendar

    whole, fraction = stamp.split(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y%m%dT%H%M%S"))
    return seconds * 1_000_000 + int(fraction)


def rotated_name(stem: str, micros: int, counter: int) -> str:
    """`<stem>_<stamp>Z[_<counter>].log`: names sort as plain strings in (micros, counter) order."""
    if not 0 <= counter < _COUNTER_LIMIT:
        raise ValueError(f"rotation counter out of range: {counter}")
    tail = f"_{counter:0{_COUNTER_DIGITS}d}" if counter else ""
    return f"{stem}_{format_stamp(micros)}Z{tail}.log"


def looks_rotated(stem: str) -> bool:
    """Whether `stem` ends like a rotated name, so `<stem>.log` could collide with one."""
    return _ROTATED_STEM_RE.match(stem) is not None


def rotated_pattern(stem: str) -> re.Pattern[str]:
    """Matches the rotated names of `stem`; groups: stamp, counter (or None)."""
    return re.compile(re.escape(stem) + _ROTATED_TAIL + r"\.log\Z", re.DOTALL)


@dataclass(frozen=True)
class Stamp:
    """The (micros, counter) of a rotated name; names sort in this order."""

    micros: int
    counter: int


def next_stamp(now_micros: int, last: Stamp | None) -> Stamp:
    """The stamp of the next rotation: strictly after `last`, even if the clock stood still or went back."""
    if last is None or now_micros > last.micros:
        return Stamp(now_micros, 0)
    if last.counter + 1 < _COUNTER_LIMIT:
        return Stamp(last.micros, last.counter + 1)
    return Stamp(last.micros + 1, 0)


def stamp_of(stem: str, name: str) -> Stamp | None:
    """The stamp of `name` if it is a rotated name of `stem`."""
    match = rotated_pattern(stem).match(name)
    if match is None:
        return None
    return Stamp(parse_stamp(match.group(1)), int(match.group(2) or 0))
