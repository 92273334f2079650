"""The writer against a dict model: every acknowledged line is stored exactly once, in order, whatever
mix of writes, requests naming more files than the open-file bound, rotations, failed writes (ENOSPC
after a partial write), releases, idle closes and LRU evictions happens; a failed write leaves no
partial line; open files and their folders' descriptors stay within the bound."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from logstream.streamer.errors import StorageError, StorageFull
from logstream.streamer.writer import Writer

# Different spellings of the same three files.
KEYS = {("", "a"): ("", "a"), ("./", "a"): ("", "a"), ("x/y", "b"): ("x/y", "b"),
        ("x//./y", "b"): ("x/y", "b"), ("x", "c"): ("x", "c")}
lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"-") + b"\n"), min_size=1, max_size=6)


class WriterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.model: dict[tuple[str, str], list[bytes]] = {key: [] for key in set(KEYS.values())}
        self.now = 0.0
        self.fail: int | None = None  # errno of the next write, after writing half of it
        self.writer: Writer

    @initialize(limit=st.integers(min_value=8, max_value=40), max_open=st.integers(min_value=1, max_value=3))
    def start(self, limit: int, max_open: int) -> None:
        self.limit = limit
        self.writer = Writer(self.tmp / "root", limit=limit, max_open_files=max_open,
                             monotonic=lambda: self.now, write=self._write)

    def _write(self, fd: int, data: bytes | memoryview) -> int:
        if self.fail is not None:
            code, self.fail = self.fail, None
            os.write(fd, bytes(data[: max(1, len(data) // 2)]))
            raise OSError(code, os.strerror(code))
        return os.write(fd, data)

    @rule(key=st.sampled_from(sorted(KEYS)), batch=lines)
    def write(self, key: tuple[str, str], batch: list[bytes]) -> None:
        assert self.writer.append(*key, b"".join(batch)) == len(batch)
        self.model[KEYS[key]].extend(batch)

    @rule(picks=st.lists(st.tuples(st.sampled_from(sorted(KEYS)), lines), min_size=1, max_size=8))
    def write_many(self, picks: list[tuple[tuple[str, str], list[bytes]]]) -> None:
        """One request for several files, often more than the bound: written in parts, in order."""
        chunks = [self.writer.chunk(*key, b"".join(batch)) for key, batch in picks]
        expected = sum(len(batch) for _, batch in picks)
        assert self.writer.write_chunks([c for c in chunks if c is not None])[0] == expected
        for key, batch in picks:
            self.model[KEYS[key]].extend(batch)

    @rule(picks=st.lists(st.tuples(st.sampled_from(sorted(KEYS)), lines), min_size=1, max_size=8))
    def write_held_in_slices(self, picks: list[tuple[tuple[str, str], list[bytes]]]) -> None:
        """As the servicer writes a large request: hold every file (when they fit), then write two
        chunks a call, then let go."""
        chunks = [c for c in (self.writer.chunk(*key, b"".join(batch)) for key, batch in picks) if c is not None]
        try:
            if self.writer.fits(chunks):
                self.writer.hold(chunks)
                assert self.writer.descriptors <= max(self.writer.max_open_files, 2)
            for start in range(0, len(chunks), 2):
                self.writer.write_chunks(chunks[start:start + 2])
        finally:
            self.writer.let_go()
        for key, batch in picks:
            self.model[KEYS[key]].extend(batch)

    @rule(key=st.sampled_from(sorted(KEYS)), batch=lines, code=st.sampled_from([errno.ENOSPC, errno.EIO]))
    def failed_write(self, key: tuple[str, str], batch: list[bytes], code: int) -> None:
        self.fail = code
        with pytest.raises(StorageFull if code == errno.ENOSPC else StorageError):
            self.writer.append(*key, b"".join(batch))
        self.fail = None

    @rule()
    def close_all(self) -> None:
        self.writer.close_all()

    @rule(key=st.sampled_from(sorted(KEYS)))
    def release(self, key: tuple[str, str]) -> None:
        self.writer.release([key])

    @rule(seconds=st.floats(min_value=0, max_value=10))
    def time_passes_and_idle_files_close(self, seconds: float) -> None:
        self.now += seconds
        self.writer.close_idle(5.0)

    @invariant()
    def files_hold_exactly_the_acknowledged_lines(self) -> None:
        if not hasattr(self, "limit"):
            return
        for (path, stem), expected in self.model.items():
            folder = self.tmp / "root" / path
            names = sorted(n for n in os.listdir(folder) if n.startswith(stem + "_")) if folder.exists() else []
            if (folder / f"{stem}.log").exists():
                names.append(f"{stem}.log")
            contents = [(folder / n).read_bytes() for n in names]
            assert b"".join(contents) == b"".join(expected)
            for content in contents:
                assert content == b"" or content.endswith(b"\n")
                assert len(content) <= self.limit or content.count(b"\n") == 1

    @invariant()
    def open_files_within_bound(self) -> None:
        if hasattr(self, "limit"):
            assert self.writer.open_files <= self.writer.max_open_files
            # Files and their folders together; one file in a folder needs two even under a cap of 1.
            assert self.writer.descriptors <= max(self.writer.max_open_files, 2)

    def teardown(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestWriterMachine = WriterMachine.TestCase
