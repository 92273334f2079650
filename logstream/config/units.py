"""Sizes ("1MB", "1.5KiB", "-1B") and durations ("5s", "250ms", "1m30s"): pure parsing and formatting."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

UNLIMITED = -1

# Decimal units as the Go original (1KB = 1000 B), binary units as IEC.
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*([A-Za-z]*)\s*$")

DURATION_UNITS: dict[str, Decimal] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


class UnitError(ValueError):
    """A size or duration that cannot be parsed; the message says why."""


def parse_size(text: str | int) -> int:
    """Bytes in `text`: "1MB" -> 1_000_000, "1.5KiB" -> 1536, "-1" or "-1B" -> UNLIMITED (-1).

    A bare number means bytes. Fractions of a byte are rejected rather than rounded silently.
    """
    if isinstance(text, bool):
        raise UnitError(f"not a size: {text!r}")
    if isinstance(text, int):
        return _checked_bytes(Decimal(text), str(text))
    if not isinstance(text, str):  # e.g. a TOML float, `size = 1.5`: refused, not a TypeError
        raise UnitError(f"not a size: {text!r} (expected e.g. 1MB, 512KiB, 1.5GB or -1B)")
    match = _SIZE_RE.match(text)
    if not match:
        raise UnitError(f"not a size: {text!r} (expected e.g. 1MB, 512KiB, 1.5GB or -1B)")
    number, unit = match.groups()
    multiplier = SIZE_UNITS.get(unit.upper() if unit else "B")
    if multiplier is None:
        known = ", ".join(SIZE_UNITS_DISPLAY)
        raise UnitError(f"unknown size unit {unit!r} in {text!r} (known: {known})")
    try:
        value = Decimal(number) * multiplier
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise UnitError(f"not a size: {text!r}") from exc
    return _checked_bytes(value, text)


SIZE_UNITS_DISPLAY = ("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB")


def _checked_bytes(value: Decimal, text: str) -> int:
    if value == UNLIMITED:
        return UNLIMITED
    if value < 0:
        raise UnitError(f"negative size {text!r} (only -1 / -1B, meaning unlimited, is allowed)")
    if value != value.to_integral_value():
        raise UnitError(f"size {text!r} is not a whole number of bytes")
    if value == 0:
        raise UnitError(f"size {text!r} is zero (use -1B for unlimited)")
    return int(value)


def format_size(n_bytes: int) -> str:
    """The shortest exact text for `n_bytes`: 1_000_000 -> "1MB", 1536 -> "1536B", -1 -> "-1B"."""
    if n_bytes == UNLIMITED:
        return "-1B"
    if n_bytes <= 0:
        raise UnitError(f"not a size: {n_bytes}")
    for unit in ("TiB", "TB", "GiB", "GB", "MiB", "MB", "KiB", "KB"):
        multiplier = SIZE_UNITS[unit.upper()]
        if n_bytes % multiplier == 0:
            return f"{n_bytes // multiplier}{unit}"
    return f"{n_bytes}B"


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Go-style duration: "5s" -> 5.0, "1m30s" -> 90.0, "250ms" -> 0.25.

    A bare number means seconds. Negative and zero durations are rejected.
    """
    if isinstance(text, bool):
        raise UnitError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        stripped = text.strip()
        try:
            seconds = float(stripped)
        except ValueError:
            seconds = _parse_duration_parts(stripped, text)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UnitError(f"duration {text!r} must be positive (e.g. 5s, 250ms, 1m30s)")
    return seconds


def _parse_duration_parts(stripped: str, text: str) -> float:
    position, total = 0, Decimal(0)
    for match in _DURATION_PART_RE.finditer(stripped):
        if match.start() != position:
            break
        total += Decimal(match.group(1)) * DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(stripped) or position == 0:
        raise UnitError(f"not a duration: {text!r} (expected e.g. 5s, 250ms, 1m30s)")
    return float(total)


def format_duration(seconds: float) -> str:
    """A Go-style text for `seconds` that parse_duration reads back: 90.0 -> "90s", 0.25 -> "250ms"."""
    if seconds <= 0 or not math.isfinite(seconds):
        raise UnitError(f"not a duration: {seconds}")
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds!r}s"
