"""Wire arithmetic both roles share with the Go original's protocol."""

from __future__ import annotations


def wrap_int32(value: int) -> int:
    """`value` wrapped to a signed 32-bit integer, as Go's int32 arithmetic wraps (a ping's answer)."""
    return (value + 2**31) % 2**32 - 2**31
