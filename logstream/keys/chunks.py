"""A chunk: whole lines for one file key, checked the same way by the mediator and the streamer (pure)."""

from __future__ import annotations

from typing import NamedTuple

from logstream.keys.paths import FileKey


class Chunk(NamedTuple):
    """Whole lines for one file: `data` ends with b"\\n" (or is empty: nothing to write), `lines` counts them."""

    key: FileKey
    data: bytes
    lines: int


class LineTooLong(ValueError):
    """A line of a chunk is longer than the limit; nothing of the chunk may be written."""

    def __init__(self, key: FileKey, length: int, max_line: int) -> None:
        super().__init__(f"line of {length} bytes for {key} is longer than the maximum of {max_line} bytes "
                         "(-max-line)")
        self.key = key
        self.length = length
        self.max_line = max_line


def whole_lines(key: FileKey, data: bytes, max_line: int) -> Chunk:
    """The chunk of `data` for `key`: a final newline added when missing, every line at most `max_line`
    bytes (newline excluded), else LineTooLong. Empty `data` is an empty chunk (0 lines)."""
    # Built with tuple.__new__: the mediator checks every chunk of every request, and NamedTuple's
    # own __new__ (a Python function) costs a third of the check.
    if not data:
        return _new(Chunk, (key, data, 0))
    if data[-1] != 10:
        data += b"\n"
    if len(data) > max_line + 1:  # else no line can be too long
        start = longest_line_over(data, max_line)
        if start is not None:
            raise LineTooLong(key, data.find(b"\n", start) - start, max_line)
    return _new(Chunk, (key, data, data.count(b"\n")))


_new = tuple.__new__


def longest_line_over(data: bytes, max_line: int) -> int | None:
    """The start of the first line in `data` longer than `max_line` bytes (newline excluded), if any.

    `data` ends with b"\\n". Looks only for the last newline in each window of max_line + 1 bytes,
    so the cost grows with len(data) / max_line rather than with the number of lines.
    """
    total, start = len(data), 0
    while total - start > max_line + 1:
        newline = data.rfind(b"\n", start, start + max_line + 1)
        if newline < 0:
            return start
        start = newline + 1
    return None
