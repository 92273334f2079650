"""Rotation on disk when names collide: an honest collision moves on to the next free name, a naming
bug (the same name every time) fails with StorageError after a bounded number of tries instead of
looping forever, and nothing written or rotated before is lost or overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstream.keys.names import rotated_name
from logstream.streamer import rotating
from logstream.streamer.errors import StorageError
from logstream.streamer.writer import Writer

MICROS = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def test_a_taken_rotated_name_is_skipped_not_overwritten(tmp_path: Path) -> None:
    writer = Writer(tmp_path, limit=10, clock_us=lambda: MICROS)  # a clock standing still
    writer.append("", "f", b"aaaaaaaa\n")
    writer.append("", "f", b"bbbbbbbb\n")  # rotation 1: stamp (MICROS, 0)
    taken = rotated_name("f", MICROS, 1)  # the next name, taken by someone else meanwhile
    (tmp_path / taken).write_bytes(b"someone else's\n")
    writer.append("", "f", b"cccccccc\n")  # rotation 2: (MICROS, 1) exists, so (MICROS, 2)
    writer.close()
    assert (tmp_path / rotated_name("f", MICROS, 0)).read_bytes() == b"aaaaaaaa\n"
    assert (tmp_path / taken).read_bytes() == b"someone else's\n"
    assert (tmp_path / rotated_name("f", MICROS, 2)).read_bytes() == b"bbbbbbbb\n"
    assert (tmp_path / "f.log").read_bytes() == b"cccccccc\n"


def test_a_rotated_name_that_never_changes_fails_instead_of_spinning(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def same_name(stem: str, micros: int, counter: int) -> str:
        tried.append(stem)
        return f"{stem}_same.log"

    monkeypatch.setattr(rotating, "rotated_name", same_name)
    writer = Writer(tmp_path, limit=10)
    writer.append("", "f", b"aaaaaaaa\n")
    writer.append("", "f", b"bbbbbbbb\n")  # the first rotation takes the name
    with pytest.raises(StorageError) as caught:
        writer.append("", "f", b"cccccccc\n")  # every later one finds it taken
    assert type(caught.value) is StorageError  # not a subclass: not "full", not "read-only"
    assert len(tried) == 1 + rotating.NAME_ATTEMPTS
    assert writer.stats.rotations == 1 and writer.stats.write_errors == 1
    writer.close()
    assert (tmp_path / "f_same.log").read_bytes() == b"aaaaaaaa\n"
    assert (tmp_path / "f.log").read_bytes() == b"bbbbbbbb\n"  # nothing written into a file it could not rotate
