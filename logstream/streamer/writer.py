"""The streamer's files: one `Writer` appends whole lines below the root, rotating and re-opening; no gRPC.

One `Writer` owns every file a streamer writes. It is not thread-safe: the server calls it from its
event loop only, and each call runs to completion (no awaits inside), so a write is never cut in half
by shutdown. (The servicer cuts a large request into several calls, see service.py.)

Descriptors (handles.py): the writer holds at most `max_open_files` descriptors for files and their
folders together, at every instant (plus the root's, and two while a new folder path is walked). A
folder's descriptor is shared by the open files in it. Least-recently-used files are closed *before*
another is opened, never one the current call still needs; a call naming more files than fit is
written in parts, each opened, checked and written before the next.

Safety, in the order a request meets it:
- `keys.paths.validate_target` refuses bad names lexically, `keys.chunks.whole_lines` long lines;
- folders are created and opened one segment at a time relative to their parent with O_NOFOLLOW
  (opening.py): a path through a symlink is refused (even one pointing inside the root would give one
  file two keys), and each folder's real location must lie below the root's;
- the file is opened with O_NOFOLLOW relative to its folder, must be a regular file, and is locked with
  `flock(LOCK_EX|LOCK_NB)` for as long as it stays open (another holder: `FileLocked`, nothing written);
- before each request is written, every file it goes to must still have a name (else it is re-opened),
  and before a file is opened the root path must still name the folder held open (else that is
  opened afresh, re-created if gone): no line is acknowledged into a deleted file;
- a failed write is truncated back to the size before it, so no partial line stays, and the handle is
  dropped: the next request opens the file afresh.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from logstream.config.units import UNLIMITED
from logstream.keys.chunks import Chunk, LineTooLong, whole_lines
from logstream.keys.paths import BadTarget, FileKey, Target, validate_target
from logstream.streamer.errors import BadRequest, RequestProblem, StorageError, WriterError, mapped
from logstream.streamer.handles import FsyncPolicy, Handle, OpenFiles, WriterStats, split_parts
from logstream.streamer.opening import Opener
from logstream.streamer.rotating import prune, rotate_name
from logstream.streamer.rotation import plan_chunk

logger = logging.getLogger(__name__)

_TARGET_CACHE_MAX = 65_536


def _utc_micros() -> int:
    return time.time_ns() // 1000


class Writer:
    """Appends whole lines to `<root>/<path>/<filename>.log`, rotating at `limit` bytes."""

    def __init__(
        self,
        root: Path,
        *,
        limit: int = UNLIMITED,
        max_line: int = 1_048_576,
        max_open_files: int = 256,
        fsync: FsyncPolicy = "never",
        keep: int = 0,
        echo: Callable[[bytes], object] | None = None,
        clock_us: Callable[[], int] = _utc_micros,
        monotonic: Callable[[], float] = time.monotonic,
        write: Callable[[int, bytes | memoryview], int] = os.write,
        on_fsync: Callable[[float], None] | None = None,
    ) -> None:
        if limit != UNLIMITED and limit <= 0:
            raise ValueError(f"size limit must be positive or unlimited, not {limit}")
        self.limit = limit
        self.max_line = max_line
        self.max_open_files = max_open_files
        self.fsync = fsync
        self.keep = keep
        self._echo = echo
        self._clock_us = clock_us
        self._monotonic = monotonic
        self._write = write
        self.stats = WriterStats()
        self._files = OpenFiles(max_open_files, fsync)
        self._files.syncs.observe = on_fsync  # each fsync's time, for /metrics
        self._handles = self._files.handles
        self._opener = Opener(root, self._files, self.stats)
        self.root = self._opener.root
        self._targets: dict[tuple[str, str], Target] = {}
        self._closed = False

    # -- validation (pure, no file is touched) ------------------------------------------------

    def target(self, path: str, filename: str) -> Target:
        """The validated target of (path, filename), or BadRequest."""
        raw = (path, filename)
        found = self._targets.get(raw)
        if found is not None:
            return found
        try:
            opener = self._opener
            found = validate_target(
                path, filename, root_bytes=opener.root_bytes, name_max=opener.name_max, path_max=opener.path_max
            )
        except BadTarget as exc:
            self.stats.rejected += 1
            raise BadRequest(RequestProblem.BAD_TARGET, str(exc)) from exc
        if len(self._targets) >= _TARGET_CACHE_MAX:
            self._targets.clear()
        self._targets[raw] = found
        return found

    def chunk(self, path: str, filename: str, data: bytes) -> Chunk | None:
        """A validated chunk of whole lines (a final newline added), None when `data` is empty."""
        target = self.target(path, filename)
        if not data:
            self._opener.refuse_symlinks(target)  # nothing to write, but a bad target is still refused
            return None
        try:
            return whole_lines(target.key, data, self.max_line)
        except LineTooLong as exc:
            self.stats.rejected += 1
            raise BadRequest(RequestProblem.LINE_TOO_LONG, str(exc)) from exc

    # -- writing --------------------------------------------------------------------------------

    def append(self, path: str, filename: str, data: bytes) -> int:
        """Validate and append one blob of lines; the number of lines written."""
        chunk = self.chunk(path, filename, data)
        if chunk is None:
            return 0
        return self.write_chunks((chunk,))[0]

    def write_chunks(self, chunks: Sequence[Chunk]) -> tuple[int, int]:
        """Append validated chunks in order; (lines, bytes) written.

        Every file is opened and locked before the first byte is written, so a bad or locked target
        leaves everything unwritten, when the files fit under the cap together (else that holds per
        part, see `parts`). An I/O error stops at the failing chunk: earlier chunks stay written
        (whole lines), the failing write is undone.
        """
        if self._closed:
            raise StorageError("the writer is closed")
        lines = written = 0
        self._opener.call += 1
        for part in self.parts(chunks):
            part_lines, part_bytes = self._write_part(part)
            lines += part_lines
            written += part_bytes
        return lines, written

    def fits(self, chunks: Sequence[Chunk]) -> bool:
        """Whether the files of `chunks` and their folders can all be open at once."""
        parts = self.parts(chunks)
        next(parts)
        return next(parts, None) is None

    def hold(self, chunks: Sequence[Chunk]) -> None:
        """Open, check and lock the files of `chunks` now, and keep them open until `let_go`.

        For a request written in several calls (slices): hold every file first, then write, so that a
        bad or locked target still leaves the whole request unwritten (its files must `fit`)."""
        if self._closed:
            raise StorageError("the writer is closed")
        now = self._monotonic()
        self._opener.root_checked = False
        self._opener.call += 1
        for chunk in chunks:
            self._live_handle(chunk.key, now)
            self._files.held.add(chunk.key)

    def let_go(self) -> None:
        """End `hold`: the held files may be closed again (least recently used first)."""
        self._files.held.clear()

    def parts(self, chunks: Sequence[Chunk]) -> Iterator[Sequence[Chunk]]:
        """`chunks` cut, in order, into runs whose files and folders fit under the cap together."""
        return split_parts(chunks, self.max_open_files)

    def _write_part(self, chunks: Sequence[Chunk]) -> tuple[int, int]:
        """Open and lock every file of `chunks` (they fit in the cap), then write them in order."""
        now = self._monotonic()
        self._opener.root_checked = False
        pinned = self._files.pinned
        try:
            handles = []
            for chunk in chunks:
                handles.append(self._live_handle(chunk.key, now))
                pinned.add(chunk.key)
            lines = written = 0
            for chunk, handle in zip(chunks, handles):
                self._append(handle, chunk.data, chunk.lines)
                lines += chunk.lines
                written += len(chunk.data)
                if self._echo is not None:
                    self._echo(chunk.data)
            if self.fsync == "always":
                self._sync(handles)
        finally:
            pinned.clear()
        return lines, written

    def _append(self, handle: Handle, data: bytes, lines: int) -> None:
        if self.limit == UNLIMITED or handle.size + len(data) <= self.limit:  # plan_chunk's one-segment case
            self._write_all(handle, data)
            self.stats.lines += lines
            return
        segments = plan_chunk(data, handle.size, self.limit)
        if len(segments) == 1 and not segments[0].rotate:
            self._write_all(handle, data)
        else:
            view = memoryview(data)
            for segment in segments:
                if segment.rotate:
                    self._rotate(handle)
                self._write_all(handle, view[segment.start : segment.end])
        self.stats.lines += lines

    def _write_all(self, handle: Handle, buf: bytes | memoryview) -> None:
        before = handle.size
        total = len(buf)
        try:
            done = self._write(handle.fd, buf)
            while done < total:
                if done <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                more = self._write(handle.fd, memoryview(buf)[done:])
                if more <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                done += more
        except OSError as exc:
            self._undo(handle, before)
            self.stats.write_errors += 1
            raise mapped(exc, f"write to {handle.target.relative}", self.root) from None
        handle.size = before + total
        handle.dirty = True
        self.stats.bytes += total

    def _undo(self, handle: Handle, size: int) -> None:
        """Cut a failed write back to `size` so no partial line stays, then drop the handle."""
        try:
            os.ftruncate(handle.fd, size)
        except OSError as exc:
            logger.error("cannot truncate %s back to %d bytes after a failed write: %s",
                         handle.target.relative, size, exc)
        self._files.drop(handle, sync=False)

    def _sync(self, handles: Iterable[Handle]) -> None:
        for handle in handles:
            if handle.dirty and handle.fd >= 0:
                try:
                    self._files.syncs.data(handle.fd)
                except OSError as exc:
                    self._files.drop(handle, sync=False)
                    self.stats.write_errors += 1
                    raise mapped(exc, f"fsync of {handle.target.relative}", self.root) from None
                handle.dirty = False

    def sync_dirty(self) -> int:
        """fsync every file written since its last fsync (the `interval` policy); how many."""
        dirty = [handle for handle in self._handles.values() if handle.dirty]
        for handle in dirty:
            try:
                self._files.syncs.data(handle.fd)
                handle.dirty = False
            except OSError as exc:
                logger.error("fsync of %s failed: %s", handle.target.relative, exc)
                self._files.drop(handle, sync=False)
        return len(dirty)

    def _rotate(self, handle: Handle) -> None:
        """Give the current file a unique rotated name (never overwriting) and start a fresh one."""
        target = handle.target
        try:
            stamp = rotate_name(handle.dir_fd, target, self._clock_us(), handle.last_stamp)
            if handle.dirty and self.fsync != "never":
                self._files.syncs.data(handle.fd)
        except OSError as exc:
            self._files.drop(handle, sync=False)
            self.stats.write_errors += 1
            raise mapped(exc, f"rotation of {target.relative}", self.root) from None
        os.close(handle.fd)  # unlocks the rotated file
        handle.fd = -1
        handle.last_stamp = stamp
        self.stats.rotations += 1
        try:
            handle.fd, handle.size = self._opener.open_locked(handle.dir_fd, target)
        except WriterError:
            self._files.drop(handle, sync=False)
            raise
        handle.dirty = False
        if self.fsync == "always":
            self._opener.sync_dir(handle)
        if self.keep > 0:
            prune(handle.dir_fd, target, self.keep)

    # -- the root and open files still having their names -------------------------------------------

    @property
    def root_ok(self) -> bool:
        """False while the root is gone and cannot be re-created."""
        return self._opener.root_ok

    @property
    def root_real(self) -> str:
        return self._opener.root_real

    def check_root(self) -> None:
        """Make sure the root path is still the folder we hold, else open it afresh (see Opener)."""
        self._opener.check_root()

    def _live_handle(self, key: FileKey, now: float) -> Handle:
        """The open file of `key`, or opened now; but a file that lost its name (unlinked: the file,
        its folder or the root deleted) is dropped and opened afresh, so no line is acknowledged into
        a file nobody can read. The cost per request is one fstat per file; the root's identity (a
        path lookup) is checked only before opening a file, and every maintenance tick."""
        handle = self._handles.get(key)
        if handle is not None:
            files = self._files
            if key in files.held or key in files.pinned or os.fstat(handle.fd).st_nlink > 0:
                # (a held or pinned file was checked moments ago)
                self._handles.move_to_end(key)
                handle.last_used = now
                return handle
            logger.warning("%s was deleted while open: opening it afresh", handle.target.relative)
            files.drop(handle, sync=False)
        return self._opener.open(Target.of(key), now, sync_dir=self.fsync == "always")

    # -- closing ----------------------------------------------------------------------------------

    def close_idle(self, idle_s: float) -> int:
        """Close the files not written for `idle_s` seconds; how many."""
        return self._files.close_idle(self._monotonic() - idle_s)

    def release(self, keys: Iterable[tuple[str, str]]) -> int:
        """Close (flush, unlock) the files of the given (path, filename) keys; how many were open."""
        released = 0
        for path, filename in keys:
            try:
                target = self.target(path, filename)
            except BadRequest:
                continue
            handle = self._handles.get(target.key)
            if handle is not None:
                self._files.drop(handle, sync=True)
                released += 1
        return released

    def close_all(self) -> int:
        """Flush, unlock and close every open file; how many."""
        return self._files.close_all()

    def close(self) -> None:
        """Close every file and the root; later writes fail."""
        self.close_all()
        if not self._closed:
            self._closed = True
            self._opener.close()

    @property
    def open_files(self) -> int:
        return len(self._handles)

    @property
    def descriptors(self) -> int:
        """Descriptors held for files and their folders (what `max_open_files` bounds)."""
        return self._files.descriptors

    def oldest_open_idle_s(self) -> tuple[int, float]:
        """(files open, seconds since the least recently written of them was written; 0 with none).
        O(1): the handles are kept least recently used first, the order they are evicted in."""
        if not self._handles:
            return 0, 0.0
        oldest = next(iter(self._handles.values())).last_used
        return len(self._handles), max(0.0, self._monotonic() - oldest)

    def open_keys(self) -> list[FileKey]:
        return list(self._handles)

