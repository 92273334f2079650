"""The handler's disk spool: records left at close written to a folder bounded in bytes, replayed in order later.

A segment is written whole or not at all (a temporary file, fsync, rename, fsync of the folder), so
a crash never leaves half a segment under a segment's name. Names sort in the order segments were
written. A reader holds an exclusive `flock` on a segment while it replays it and deletes it only
after every record was delivered: two processes sharing a folder never both replay one segment, and
a crash during replay sends the segment again (at-least-once).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"LOGSTREAM-SPOOL 1\n"
SUFFIX = ".spool"
_TMP_PREFIX = ".tmp-"
_LENGTH = struct.Struct(">I")
_counter = itertools.count()


class SpoolError(Exception):
    """A segment that cannot be read back (not written by this module, or damaged)."""


@dataclass(frozen=True)
class Segment:
    """One segment's records, for `path`/`filename`, as they were buffered."""

    path: str
    filename: str
    records: list[bytes]


def encode_segment(path: str, filename: str, records: Sequence[bytes]) -> bytes:
    header = json.dumps({"path": path, "filename": filename, "records": len(records)}).encode() + b"\n"
    return MAGIC + header + b"".join(_LENGTH.pack(len(data)) + data for data in records)


def decode_segment(blob: bytes) -> Segment:
    if not blob.startswith(MAGIC):
        raise SpoolError("not a logstream spool segment")
    end = blob.find(b"\n", len(MAGIC))
    try:
        header = json.loads(blob[len(MAGIC):end])
        path, filename, count = str(header["path"]), str(header["filename"]), int(header["records"])
    except (ValueError, KeyError, TypeError):
        raise SpoolError("bad segment header") from None
    records: list[bytes] = []
    at = end + 1
    while at < len(blob):
        if at + _LENGTH.size > len(blob):
            raise SpoolError("segment cut inside a record length")
        (size,) = _LENGTH.unpack_from(blob, at)
        at += _LENGTH.size
        if at + size > len(blob):
            raise SpoolError("segment cut inside a record")
        records.append(blob[at:at + size])
        at += size
    if len(records) != count:  # a segment cut between records would otherwise look whole
        raise SpoolError(f"segment holds {len(records)} of its {count} records")
    return Segment(path, filename, records)


def fit(records: Sequence[bytes], room: int, path: str, filename: str) -> int:
    """How many of `records`, oldest first, fit in a segment of at most `room` bytes."""
    empty = len(encode_segment(path, filename, []))  # its header says "records": 0
    body = 0
    count = 0
    for data in records:
        body += _LENGTH.size + len(data)
        if empty - 1 + len(str(count + 1)) + body > room:
            break
        count += 1
    return count


def segments(folder: Path) -> list[Path]:
    """The folder's segments, oldest first."""
    try:
        return sorted(entry for entry in folder.iterdir() if entry.name.endswith(SUFFIX))
    except FileNotFoundError:
        return []


def used_bytes(folder: Path) -> int:
    total = 0
    for entry in segments(folder):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:
            pass  # replayed and deleted meanwhile
    return total


def write_segment(folder: Path, path: str, filename: str, records: Sequence[bytes]) -> Path:
    """Write `records` as the newest segment, durably; its name."""
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    name = f"{time.time_ns():020d}-{pid:08d}-{next(_counter):06d}{SUFFIX}"
    tmp = folder / f"{_TMP_PREFIX}{pid}-{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, encode_segment(path, filename, records))  # one write: segments are at most spool_bytes
        os.fsync(fd)
    finally:
        os.close(fd)
    final = folder / name
    os.rename(tmp, final)
    _fsync_folder(folder)
    return final


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files of writers that are gone (a crash while spooling)."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(_TMP_PREFIX):
            continue
        try:
            pid = int(entry.name[len(_TMP_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass  # not ours to judge: a live process of another user, or a foreign name


class Claim:
    """An exclusively locked segment being replayed; `done()` deletes it, `release()` leaves it."""

    def __init__(self, file: Path, fd: int) -> None:
        self.file, self._fd = file, fd

    def read(self) -> Segment:
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return decode_segment(b"".join(chunks))

    def done(self) -> None:
        self.file.unlink(missing_ok=True)  # while still locked: nobody else can have claimed it
        self.release()

    def quarantine(self) -> Path:
        """Keep a segment that cannot be read under a name that is never replayed."""
        bad = self.file.with_name(self.file.name + ".bad")
        os.rename(self.file, bad)
        self.release()
        return bad

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def claims(folder: Path) -> Iterator[Claim]:
    """Claim the folder's segments one at a time, oldest first, skipping those another process holds
    or has already replayed. The caller must `done()` or `release()` each before taking the next."""
    for file in segments(folder):
        try:
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Locked after the holder deleted it? Then it was delivered already.
            if os.fstat(fd).st_ino != os.stat(file).st_ino:
                raise FileNotFoundError(file)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            continue
        yield Claim(file, fd)
