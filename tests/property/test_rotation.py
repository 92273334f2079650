"""Rotation: for any lines and any limit, rotated files hold <= limit bytes or one longer line, no line is
split, and the files in name order give back the input; rotations in one (frozen) second overwrite nothing.

The pure planner is checked against the line-by-line rule; the real writer is driven in a temp folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from logstream.config.units import UNLIMITED
from logstream.keys.chunks import longest_line_over
from logstream.keys.names import Stamp, next_stamp, rotated_name, stamp_of
from logstream.streamer.rotation import plan_append, plan_chunk
from logstream.streamer.writer import Writer

line_bodies = st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"x"))
lines_st = st.lists(line_bodies.map(lambda b: b + b"\n"), min_size=1, max_size=40)
limits = st.integers(min_value=1, max_value=120) | st.just(UNLIMITED)


def model_files(size: int, lines: list[bytes], limit: int) -> list[bytes]:
    """The line-by-line rule: [bytes added to the current file, then one entry per fresh file]."""
    files = [b""]
    for line in lines:
        if plan_append(size, len(line), limit):
            files.append(b"")
            size = 0
        files[-1] += line
        size += len(line)
    return files


@given(lines_st, st.integers(min_value=0, max_value=150), limits)
def test_plan_chunk_matches_the_line_by_line_rule(lines: list[bytes], size: int, limit: int) -> None:
    data = b"".join(lines)
    files = [b""]
    position = 0
    for segment in plan_chunk(data, size, limit):
        assert segment.start == position and segment.end > segment.start
        if segment.rotate:
            files.append(b"")
        files[-1] += data[segment.start : segment.end]
        position = segment.end
    assert position == len(data)
    assert files == model_files(size, lines, limit)


@given(lines_st, st.integers(min_value=0, max_value=60))
def test_longest_line_over_agrees_with_a_plain_scan(lines: list[bytes], max_line: int) -> None:
    data = b"".join(lines)
    expected = None
    offset = 0
    for line in lines:
        if len(line) - 1 > max_line:
            expected = offset
            break
        offset += len(line)
    assert longest_line_over(data, max_line) == expected


stamps = st.builds(Stamp, st.integers(min_value=0, max_value=4_102_444_800_000_000), st.integers(0, 999_999))


@given(st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and "\x00" not in s), stamps, stamps)
def test_rotated_names_sort_in_stamp_order(stem: str, a: Stamp, b: Stamp) -> None:
    name_a = rotated_name(stem, a.micros, a.counter)
    name_b = rotated_name(stem, b.micros, b.counter)
    assert (name_a < name_b) == ((a.micros, a.counter) < (b.micros, b.counter))
    assert stamp_of(stem, name_a) == a


@given(st.lists(st.integers(min_value=0, max_value=10**15), min_size=1, max_size=50))
def test_next_stamp_strictly_increases_whatever_the_clock_does(clock: list[int]) -> None:
    last = None
    for now in clock:
        stamp = next_stamp(now, last)
        if last is not None:
            assert (stamp.micros, stamp.counter) > (last.micros, last.counter)
        last = stamp


def read_in_rotation_order(folder: Path, stem: str) -> list[tuple[str, bytes]]:
    """Rotated files sorted by name as plain strings, then the current file."""
    names = sorted(name for name in os.listdir(folder) if name.startswith(stem + "_"))
    if (folder / f"{stem}.log").exists():
        names.append(f"{stem}.log")
    return [(name, (folder / name).read_bytes()) for name in names]


def check_files(files: list[tuple[str, bytes]], lines: list[bytes], limit: int) -> None:
    assert b"".join(content for _, content in files) == b"".join(lines)
    for name, content in files:
        assert content.endswith(b"\n"), f"{name} ends with a split line"
        if limit != UNLIMITED and len(content) > limit:
            assert content.count(b"\n") == 1, f"{name}: {len(content)} bytes > {limit} and several lines"


@given(lines_st, limits, st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=10),
       st.booleans())
def test_writer_rotation_properties(lines: list[bytes], limit: int, grouping: list[int], frozen: bool) -> None:
    # A frozen clock: every rotation falls in the same microsecond, yet nothing is overwritten.
    clock = (lambda: 1_700_000_000_000_000) if frozen else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        writer = Writer(root, limit=limit, **({"clock_us": clock} if clock else {}))
        position, group = 0, 0
        while position < len(lines):
            take = grouping[group % len(grouping)]
            group += 1
            writer.append("p", "app", b"".join(lines[position : position + take]))
            position += take
        writer.close()
        files = read_in_rotation_order(root / "p", "app")
        check_files(files, lines, limit)


@given(st.integers(min_value=2, max_value=60))
def test_many_rotations_in_one_frozen_second_overwrite_nothing(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        writer = Writer(root, limit=5, clock_us=lambda: 1_700_000_000_000_000)
        lines = [f"{i:04d}\n".encode() for i in range(count)]
        for line in lines:
            writer.append("", "busy", line)
        writer.close()
        files = read_in_rotation_order(root, "busy")
        assert len(files) == count
        assert [content for _, content in files] == lines


def test_a_restarted_writer_continues_after_existing_rotated_names(tmp_path: Path) -> None:
    """With the clock behind the newest rotated name on disk, new names still sort after it."""
    root = tmp_path / "root"
    first = Writer(root, limit=5, clock_us=lambda: 2_000_000_000_000_000)
    for i in range(3):
        first.append("", "f", f"{i:04d}\n".encode())
    first.close()
    second = Writer(root, limit=5, clock_us=lambda: 1_000_000_000_000_000)
    for i in range(3, 6):
        second.append("", "f", f"{i:04d}\n".encode())
    second.close()
    files = read_in_rotation_order(root, "f")
    assert [content for _, content in files] == [f"{i:04d}\n".encode() for i in range(6)]


def test_unlimited_size_never_rotates(tmp_path: Path) -> None:
    writer = Writer(tmp_path, limit=UNLIMITED)
    for _ in range(100):
        writer.append("", "big", b"y" * 1000 + b"\n")
    writer.close()
    assert os.listdir(tmp_path) == ["big.log"]
