"""Rotated file names: `<stem>_<UTC stamp>Z[_<counter>].log`, their stamps and their order (pure)."""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

# `_YYYYMMDDTHHMMSS.ffffffZ` then, for a second rotation in the same microsecond, `_NNNNNN`.
_STAMP_CHARS = len("_20260101T000000.000000Z")
_COUNTER_DIGITS = 6
ROTATED_SUFFIX_MAX = _STAMP_CHARS + 1 + _COUNTER_DIGITS
_COUNTER_LIMIT = 10**_COUNTER_DIGITS
_ROTATED_TAIL = r"_(\d{8}T\d{6}\.\d{6})Z(?:_(\d{6}))?"
_ROTATED_STEM_RE = re.compile(r".*" + _ROTATED_TAIL + r"\Z", re.DOTALL)


def format_stamp(micros: int) -> str:
    """UTC microseconds since the epoch as `YYYYMMDDTHHMMSS.ffffff`."""
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{fraction:06d}"


def parse_stamp(stamp: str) -> int:
    """The inverse of `format_stamp`."""
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


@dataclass(frozen=True, order=True)
class Stamp:
    """The (micros, counter) of a rotated name; names sort in this order (and so do stamps)."""

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
