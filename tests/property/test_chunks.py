"""The chunk rule both roles apply (keys/chunks.py): whole lines with a final newline, none longer than
the maximum; the mediator's Validator and the streamer's Writer accept and refuse the same chunks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.keys.chunks import LineTooLong, whole_lines
from logstream.keys.paths import FileKey
from logstream.mediator.service import BadInput, Validator
from logstream.streamer.errors import BadRequest, RequestProblem
from logstream.streamer.writer import Writer

bodies = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"-")), min_size=1, max_size=8)
KEY = FileKey("p", "f")


def joined(lines: list[bytes], last_newline: bool) -> bytes:
    """The lines, each ended by a newline, but the last one's left off unless `last_newline` (an
    empty last line keeps its newline: it would not be a line without it)."""
    data = b"".join(line + b"\n" for line in lines)
    return data if last_newline or not lines[-1] else data[:-1]


@given(bodies, st.booleans(), st.integers(min_value=0, max_value=10))
def test_whole_lines_ends_every_line_or_names_the_first_too_long(lines: list[bytes], last_newline: bool,
                                                                 max_line: int) -> None:
    data = joined(lines, last_newline)
    too_long = [len(line) for line in lines if len(line) > max_line]
    if too_long:
        with pytest.raises(LineTooLong) as caught:
            whole_lines(KEY, data, max_line)
        assert (caught.value.key, caught.value.length, caught.value.max_line) == (KEY, too_long[0], max_line)
    else:
        chunk = whole_lines(KEY, data, max_line)
        assert (chunk.key, chunk.data, chunk.lines) == (KEY, joined(lines, True), len(lines))


def test_an_empty_chunk_has_no_lines() -> None:
    assert whole_lines(KEY, b"", 0) == (KEY, b"", 0)


@given(st.sampled_from([("p", "f"), ("a//./b", "f"), ("", "g")]), bodies, st.booleans(),
       st.integers(min_value=1, max_value=10))
def test_the_mediator_and_the_streamer_apply_one_rule(name: tuple[str, str], lines: list[bytes], last_newline: bool,
                                                      max_line: int) -> None:
    data = joined(lines, last_newline)
    validator = Validator(max_line)
    with tempfile.TemporaryDirectory() as tmp:
        writer = Writer(Path(tmp), max_line=max_line)
        try:
            streamer_chunk = writer.chunk(*name, data)
        except BadRequest as exc:
            assert exc.problem is RequestProblem.LINE_TOO_LONG
            with pytest.raises(BadInput):
                validator.chunk(*name, data)
            return
        finally:
            writer.close()
    assert validator.chunk(*name, data) == streamer_chunk
