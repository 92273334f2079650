"""The streamer's files: safe opening below the root, locks, append, rotation, retention; no gRPC.

One `Writer` owns every file a streamer writes. It is not thread-safe: the server calls it from its
event loop only, and each call runs to completion (no awaits inside), so a write is never cut in half
by shutdown. (The servicer cuts a large request into several calls, see service.py.)

Descriptors: the writer holds at most `max_open_files` descriptors for files and their folders
together, at every instant (plus the root's, and two while a new folder path is walked). A folder's
descriptor is shared by the open files in it. Least-recently-used files are closed *before* another
is opened, never one the current call still needs; a call naming more files than fit is written in
parts, each opened, checked and written before the next.

Safety, in the order a request meets it:
- `paths.validate_target` refuses bad names lexically;
- folders are created and opened one segment at a time relative to their parent (`dir_fd`) with
  O_NOFOLLOW: a path through a symlink is refused (even one pointing inside the root would give one
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
import fcntl
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from logstream.keys.paths import BadTarget, Target, is_inside, validate_target
from logstream.streamer.rotation import (
    UNLIMITED,
    Stamp,
    longest_line_over,
    next_stamp,
    plan_chunk,
    rotated_name,
    stamp_of,
)

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["never", "always", "interval"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone put in the root must not hang the server.
# O_RDWR (not O_WRONLY): at open, the last byte is read to repair a line a crash left unterminated.
_FILE_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DESCRIPTOR_ERRNOS = {errno.EMFILE, errno.ENFILE}
_REFUSED_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_TARGET_CACHE_MAX = 65_536


class WriterError(Exception):
    """A request the writer could not carry out; the subclass says why (the servicer maps it)."""


class BadRequest(WriterError):
    """Bad input: nothing was written."""


class FileLocked(WriterError):
    """Another process holds the file's lock: nothing was written."""


class StorageFull(WriterError):
    """The disk or a quota is full (ENOSPC, EDQUOT, EFBIG); the failed write was undone."""


class OutOfDescriptors(WriterError):
    """The process or the system has no descriptor left (EMFILE, ENFILE): nothing more was written."""


class StorageError(WriterError):
    """Another I/O error; the failed write was undone where possible."""


class RootUnusable(WriterError):
    """The root is read-only, not writable, or gone and cannot be re-created: nothing was written."""


@dataclass(frozen=True)
class Chunk:
    """Whole lines for one file: `data` is non-empty and ends with b"\\n"."""

    target: Target
    data: bytes
    lines: int


@dataclass
class WriterStats:
    lines: int = 0
    bytes: int = 0
    rotations: int = 0
    opened: int = 0
    write_errors: int = 0
    locked: int = 0
    rejected: int = 0


class _Folder:
    """An open folder below the root, shared by the open files in it (`refs` of them)."""

    __slots__ = ("dirs", "fd", "refs", "checked")

    def __init__(self, dirs: tuple[str, ...], fd: int, checked: int = 0) -> None:
        self.dirs = dirs
        self.fd = fd
        self.refs = 1
        self.checked = checked  # the write call in which it was last found where its path says


class _Handle:
    """An open, locked log file and its folder."""

    __slots__ = ("target", "fd", "folder", "dir_fd", "size", "last_used", "dirty", "last_stamp")

    def __init__(self, target: Target, fd: int, folder: _Folder, size: int, now: float) -> None:
        self.target = target
        self.fd = fd
        self.folder: _Folder | None = folder  # None once dropped
        self.dir_fd = folder.fd
        self.size = size
        self.last_used = now
        self.dirty = False
        self.last_stamp: Stamp | None = None


def _utc_micros() -> int:
    return time.time_ns() // 1000


def _mapped(exc: OSError, doing: str, root: object = "the root") -> WriterError:
    if exc.errno in _DESCRIPTOR_ERRNOS:
        return OutOfDescriptors(f"{doing}: {os.strerror(exc.errno or 0)} (lower -max-open-files or raise the "
                                "open-files limit, ulimit -n)")
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"{doing}: {os.strerror(exc.errno or 0)}")
    if exc.errno in _REFUSED_ERRNOS:
        return RootUnusable(f"{doing}: {os.strerror(exc.errno or 0)} (root {root} is read-only or not writable)")
    return StorageError(f"{doing}: {exc.strerror or exc}")


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
        self.root = root.absolute()
        root.mkdir(parents=True, exist_ok=True)
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._root_id = _identity(os.fstat(self._root_fd))
        self.root_ok = True  # False while the root is gone and cannot be re-created
        self.root_real = os.readlink(f"/proc/self/fd/{self._root_fd}")
        self._name_max = os.fpathconf(self._root_fd, "PC_NAME_MAX")
        self._path_max = os.fpathconf(self._root_fd, "PC_PATH_MAX")
        self._root_bytes = len(os.fsencode(self.root_real))
        self._handles: OrderedDict[tuple[str, str], _Handle] = OrderedDict()
        # Open folders by their path below the root; the root's own files use the root's descriptor.
        self._folders: dict[tuple[str, ...], _Folder] = {}
        self._root_folder = _Folder((), self._root_fd)
        self._folder_fds = 0  # folder descriptors open (cached or still held by a file)
        self._pinned: set[tuple[str, str]] = set()  # keys the current part holds: never evicted
        self._held: set[tuple[str, str]] = set()  # keys held for a request in slices (hold/let_go)
        self._root_checked = False
        self._part = 0  # counts calls, so that a folder's place is checked once per call
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
            found = validate_target(
                path, filename, root_bytes=self._root_bytes, name_max=self._name_max, path_max=self._path_max
            )
        except BadTarget as exc:
            self.stats.rejected += 1
            raise BadRequest(str(exc)) from None
        if len(self._targets) >= _TARGET_CACHE_MAX:
            self._targets.clear()
        self._targets[raw] = found
        return found

    def chunk(self, path: str, filename: str, data: bytes) -> Chunk | None:
        """A validated chunk of whole lines (a final newline added), None when `data` is empty."""
        target = self.target(path, filename)
        if not data:
            self._refuse_symlinks(target)  # nothing to write, but a bad target is still refused
            return None
        if data[-1] != 10:
            data += b"\n"
        if len(data) > self.max_line + 1:
            start = longest_line_over(data, self.max_line)
            if start is not None:
                self.stats.rejected += 1
                end = data.find(b"\n", start)
                raise BadRequest(
                    f"line of {end - start} bytes for {target.relative} is longer than the maximum of "
                    f"{self.max_line} bytes (-max-line)"
                )
        return Chunk(target, data, data.count(b"\n"))

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
        self._part += 1
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
        self._root_checked = False
        self._part += 1
        for chunk in chunks:
            self._live_handle(chunk.target, now)
            self._held.add(chunk.target.key)

    def let_go(self) -> None:
        """End `hold`: the held files may be closed again (least recently used first)."""
        self._held.clear()

    def parts(self, chunks: Sequence[Chunk]) -> Iterator[Sequence[Chunk]]:
        """`chunks` cut, in order, into runs whose files and folders fit under the cap together."""
        return split_parts(chunks, self.max_open_files)

    def _write_part(self, chunks: Sequence[Chunk]) -> tuple[int, int]:
        """Open and lock every file of `chunks` (they fit in the cap), then write them in order."""
        now = self._monotonic()
        self._root_checked = False
        pinned = self._pinned
        try:
            handles = []
            for chunk in chunks:
                handles.append(self._live_handle(chunk.target, now))
                pinned.add(chunk.target.key)
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

    def _append(self, handle: _Handle, data: bytes, lines: int) -> None:
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

    def _write_all(self, handle: _Handle, buf: bytes | memoryview) -> None:
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
            raise _mapped(exc, f"write to {handle.target.relative}", self.root) from None
        handle.size = before + total
        handle.dirty = True
        self.stats.bytes += total

    def _undo(self, handle: _Handle, size: int) -> None:
        """Cut a failed write back to `size` so no partial line stays, then drop the handle."""
        try:
            os.ftruncate(handle.fd, size)
        except OSError as exc:
            logger.error("cannot truncate %s back to %d bytes after a failed write: %s",
                         handle.target.relative, size, exc)
        self._drop(handle, sync=False)

    def _sync(self, handles: Iterable[_Handle]) -> None:
        for handle in handles:
            if handle.dirty and handle.fd >= 0:
                try:
                    os.fdatasync(handle.fd)
                except OSError as exc:
                    self._drop(handle, sync=False)
                    self.stats.write_errors += 1
                    raise _mapped(exc, f"fsync of {handle.target.relative}", self.root) from None
                handle.dirty = False

    def sync_dirty(self) -> int:
        """fsync every file written since its last fsync (the `interval` policy); how many."""
        dirty = [handle for handle in self._handles.values() if handle.dirty]
        for handle in dirty:
            try:
                os.fdatasync(handle.fd)
                handle.dirty = False
            except OSError as exc:
                logger.error("fsync of %s failed: %s", handle.target.relative, exc)
                self._drop(handle, sync=False)
        return len(dirty)

    # -- rotation -------------------------------------------------------------------------------

    def _rotate(self, handle: _Handle) -> None:
        """Give the current file a unique rotated name (never overwriting) and start a fresh one."""
        target = handle.target
        try:
            last = handle.last_stamp
            if last is None:
                last = max((stamp for _, stamp in self._rotated(handle)), default=None, key=_stamp_order)
            stamp = next_stamp(self._clock_us(), last)
            while True:
                name = rotated_name(target.stem, stamp.micros, stamp.counter)
                try:
                    # link() fails when the name exists: a rotated file is never overwritten.
                    os.link(target.name, name, src_dir_fd=handle.dir_fd, dst_dir_fd=handle.dir_fd,
                            follow_symlinks=False)
                    break
                except FileExistsError:
                    stamp = next_stamp(stamp.micros, stamp)
            os.unlink(target.name, dir_fd=handle.dir_fd)
            if handle.dirty and self.fsync != "never":
                os.fdatasync(handle.fd)
        except OSError as exc:
            self._drop(handle, sync=False)
            self.stats.write_errors += 1
            raise _mapped(exc, f"rotation of {target.relative}", self.root) from None
        os.close(handle.fd)  # unlocks the rotated file
        handle.fd = -1
        handle.last_stamp = stamp
        self.stats.rotations += 1
        try:
            handle.fd, handle.size = self._open_locked(handle.dir_fd, target)
        except WriterError:
            self._drop(handle, sync=False)
            raise
        handle.dirty = False
        if self.fsync == "always":
            self._sync_dir(handle)
        if self.keep > 0:
            self._prune(handle)

    def _sync_dir(self, handle: _Handle) -> None:
        try:
            os.fsync(handle.dir_fd)
        except OSError as exc:
            self._drop(handle, sync=False)
            raise _mapped(exc, f"fsync of folder {handle.target.path or '.'}", self.root) from None

    def _rotated(self, handle: _Handle) -> list[tuple[str, Stamp]]:
        found = []
        for name in os.listdir(handle.dir_fd):
            stamp = stamp_of(handle.target.stem, name)
            if stamp is not None:
                found.append((name, stamp))
        return found

    def _prune(self, handle: _Handle) -> None:
        """Keep the newest `keep` rotated files of this log name."""
        try:
            rotated = sorted(self._rotated(handle), key=lambda item: _stamp_order(item[1]))
            for name, _ in rotated[: max(0, len(rotated) - self.keep)]:
                os.unlink(name, dir_fd=handle.dir_fd)
        except OSError as exc:
            logger.error("retention in %s failed: %s", handle.target.path or ".", exc)

    # -- the root and open files still having their names -------------------------------------------

    def check_root(self) -> None:
        """Make sure the root path is still the folder we hold (one stat); when it was deleted or
        replaced, drop every handle and open it afresh, re-creating it if needed. RootUnusable when
        that fails: then every request fails the same way until the root is back."""
        try:
            if _identity(os.stat(self.root)) == self._root_id:
                self.root_ok = True
                return
        except OSError:
            pass
        self._reopen_root()

    def _reopen_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in _DESCRIPTOR_ERRNOS:  # the root is fine, we are short of descriptors
                raise _mapped(exc, f"cannot open the root {self.root}", self.root) from None
            if self.root_ok:
                logger.error("root %s is gone and cannot be re-created: %s; refusing writes until it is back",
                             self.root, exc.strerror or exc)
            self.root_ok = False
            self.close_all()
            raise RootUnusable(f"root {self.root} is gone and cannot be re-created: {exc.strerror or exc}") from None
        closed = self.close_all()
        os.close(self._root_fd)
        self._root_fd = fd
        self._root_folder = _Folder((), fd)
        self._root_id = _identity(os.fstat(fd))
        self.root_real = os.readlink(f"/proc/self/fd/{fd}")
        self._root_bytes = len(os.fsencode(self.root_real))
        self.root_ok = True
        logger.warning("root %s was deleted or replaced: opened it afresh (%d files that had lost their names "
                       "closed)", self.root, closed)

    def _live_handle(self, target: Target, now: float) -> _Handle:
        """`_handle`, but a held file that lost its name (unlinked: the file, its folder or the root
        deleted) is dropped and opened afresh, so no line is acknowledged into a file nobody can
        read. The cost per request is one fstat per file; the root's identity (a path lookup) is
        checked only before opening a file, and every maintenance tick."""
        handle = self._handles.get(target.key)
        if handle is not None:
            if target.key in self._held or target.key in self._pinned:  # checked moments ago
                self._handles.move_to_end(target.key)
                handle.last_used = now
                return handle
            if os.fstat(handle.fd).st_nlink > 0:
                self._handles.move_to_end(target.key)
                handle.last_used = now
                return handle
            logger.warning("%s was deleted while open: opening it afresh", target.relative)
            self._drop(handle, sync=False)
        if not self._root_checked:  # once per part: a stat of the root path, before opening a file
            self.check_root()
            self._root_checked = True
        return self._handle(target, now)

    # -- handles ----------------------------------------------------------------------------------

    def _handle(self, target: Target, now: float) -> _Handle:
        handle = self._handles.get(target.key)
        if handle is not None:
            self._handles.move_to_end(target.key)
            handle.last_used = now
            return handle
        folder = self._folder(target)
        try:
            self._make_room(1)
            fd, size = self._open_locked(folder.fd, target)
        except BaseException:
            self._release_folder(folder)
            raise
        handle = _Handle(target, fd, folder, size, now)
        if self.fsync == "always":
            self._sync_dir(handle)  # the file's name must survive a crash as well as its bytes
        self._handles[target.key] = handle
        self.stats.opened += 1
        return handle

    def _not_a_folder(self, target: Target, depth: int, parent_fd: int) -> BadRequest:
        """The refusal for the `depth`-th folder of `target` that could not be opened as a folder
        without following symlinks: a symlink (named) or a file."""
        self.stats.rejected += 1
        segment = target.dirs[depth - 1]
        if stat.S_ISLNK(os.stat(segment, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            link = "/".join(target.dirs[:depth])
            return BadRequest(f"path {target.path!r} passes through the symlink {link!r} (in the root); paths "
                              "through symlinks are refused")
        return BadRequest(f"path {target.path!r}: {segment!r} is a file, not a folder")

    def _make_room(self, needed: int) -> None:
        """Close least-recently-used files (not those of the current part, nor held ones) until
        `needed` more descriptors fit under the cap."""
        handles = self._handles
        skipped = 0
        while handles and len(handles) + self._folder_fds + needed > self.max_open_files:
            key, handle = next(iter(handles.items()))
            if key in self._pinned or key in self._held:
                skipped += 1
                if skipped > len(handles):
                    return  # everything left is in use (what is in use fits, unless the cap is 1)
                handles.move_to_end(key)
                continue
            self._drop(handle, sync=True)

    def _folder(self, target: Target) -> _Folder:
        """The target's folder, shared with the open files in it or walked afresh; one more ref."""
        if not target.dirs:
            return self._root_folder
        folder = self._folders.get(target.dirs)
        if folder is not None and folder.checked == self._part:
            folder.refs += 1
            return folder
        if folder is not None:
            # Still where its path says (not deleted or moved)? Checked once per call, as an open file's
            # name is (`_live_handle`). The kernel's name for the folder must be
            # exactly root/path; otherwise it is walked afresh (its files keep the old one).
            try:
                here = os.readlink(f"/proc/self/fd/{folder.fd}") == _joined(self.root_real, target.path)
            except OSError:
                here = False
            if here:
                folder.refs += 1
                folder.checked = self._part
                return folder
            del self._folders[target.dirs]
        self._make_room(2)  # the folder and its file
        folder = _Folder(target.dirs, self._open_dirs(target), self._part)
        self._folder_fds += 1
        self._folders[target.dirs] = folder
        return folder

    def _release_folder(self, folder: _Folder) -> None:
        if folder.dirs == ():
            return  # the root's descriptor is the writer's own
        folder.refs -= 1
        if folder.refs == 0:
            if self._folders.get(folder.dirs) is folder:
                del self._folders[folder.dirs]
            os.close(folder.fd)
            self._folder_fds -= 1

    def _refuse_symlinks(self, target: Target) -> None:
        """BadRequest if an existing component of the target's path is a symlink; creates nothing."""
        if target.dirs:
            fd = self._walk_dirs(target, create=False)
            if fd is not None:
                os.close(fd)

    def _open_dirs(self, target: Target) -> int:
        """A descriptor of the target's folder, created segment by segment, proven to lie in the root."""
        fd = self._walk_dirs(target, create=True)
        assert fd is not None  # with create, a missing folder is made
        return fd

    def _walk_dirs(self, target: Target, create: bool) -> int | None:
        """A descriptor of the target's folder, opened one segment at a time relative to its parent,
        never through a symlink, and proven to lie in the root. With `create` missing folders are
        made; without, a missing one gives None (nothing below it exists)."""
        doing = f"cannot {'create' if create else 'open'} folder {target.path!r}"
        try:
            current = os.dup(self._root_fd)
        except OSError as exc:
            raise _mapped(exc, doing, self.root) from None
        try:
            for depth, segment in enumerate(target.dirs, 1):
                if create:
                    try:
                        os.mkdir(segment, 0o755, dir_fd=current)
                    except FileExistsError:
                        pass
                try:
                    # O_NOFOLLOW: a symlink, even one pointing inside the root, would give one file
                    # two names, so two keys with two owners (docs/cluster-protocol.md).
                    child = os.open(segment, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=current)
                except FileNotFoundError:
                    if create:
                        raise
                    os.close(current)
                    return None
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise self._not_a_folder(target, depth, current) from None
                os.close(current)
                current = child
                real = os.readlink(f"/proc/self/fd/{current}")
                if not is_inside(real, self.root_real):
                    self.stats.rejected += 1
                    raise BadRequest(f"path {target.path!r} resolves outside the root (through a symlink)")
            return current
        except OSError as exc:
            os.close(current)
            raise _mapped(exc, doing, self.root) from None
        except BaseException:
            os.close(current)
            raise

    def _open_locked(self, dir_fd: int, target: Target) -> tuple[int, int]:
        """Open and lock the target file in its folder; (fd, size)."""
        for _ in range(5):
            try:
                fd = os.open(target.name, _FILE_FLAGS, 0o644, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    self.stats.rejected += 1
                    raise BadRequest(f"{target.relative} is a symlink; refusing to follow it") from None
                if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
                    self.stats.rejected += 1
                    raise BadRequest(f"{target.relative} exists and is not a regular file") from None
                raise _mapped(exc, f"cannot open {target.relative}", self.root) from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    self.stats.rejected += 1
                    raise BadRequest(f"{target.relative} exists and is not a regular file")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self.stats.locked += 1
                    raise FileLocked(f"{target.relative} is locked by another process") from None
                # The name may have been rotated away between our open and our lock: then we hold a
                # lock on a file nobody else will use; open the new one instead.
                try:
                    now = os.stat(target.name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    os.close(fd)
                    continue
                if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                    os.close(fd)
                    continue
                return fd, self._terminate_last_line(fd, info.st_size, target)
            except BaseException:
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                raise
        raise FileLocked(f"{target.relative} keeps being replaced by another process")

    def _terminate_last_line(self, fd: int, size: int, target: Target) -> int:
        """A file whose last line has no newline (a crash mid-write, another program) gets one, so
        that our first line is not glued to it; the file's size after that."""
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        try:
            os.write(fd, b"\n")
        except OSError as exc:
            raise _mapped(exc, f"cannot terminate the last line of {target.relative}", self.root) from None
        logger.warning("%s ended with an unterminated line (%d bytes); added a newline before appending",
                       target.relative, size)
        return size + 1

    def _drop(self, handle: _Handle, *, sync: bool) -> None:
        """Close and unlock a handle and forget it."""
        if self._handles.get(handle.target.key) is handle:
            del self._handles[handle.target.key]
        if handle.fd >= 0:
            if sync and handle.dirty and self.fsync != "never":
                try:
                    os.fdatasync(handle.fd)
                except OSError as exc:
                    logger.error("fsync of %s failed at close: %s", handle.target.relative, exc)
            os.close(handle.fd)
            handle.fd = -1
        if handle.folder is not None:
            self._release_folder(handle.folder)
            handle.folder = None
            handle.dir_fd = -1

    def close_idle(self, idle_s: float) -> int:
        """Close the files not written for `idle_s` seconds; how many."""
        cutoff = self._monotonic() - idle_s
        closed = 0
        while self._handles:
            handle = next(iter(self._handles.values()))
            if handle.last_used > cutoff:
                break
            self._drop(handle, sync=True)
            closed += 1
        return closed

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
                self._drop(handle, sync=True)
                released += 1
        return released

    def close_all(self) -> int:
        """Flush, unlock and close every open file; how many."""
        handles = list(self._handles.values())
        for handle in handles:
            self._drop(handle, sync=True)
        return len(handles)

    def close(self) -> None:
        """Close every file and the root; later writes fail."""
        self.close_all()
        if not self._closed:
            self._closed = True
            os.close(self._root_fd)

    @property
    def open_files(self) -> int:
        return len(self._handles)

    @property
    def descriptors(self) -> int:
        """Descriptors held for files and their folders (what `max_open_files` bounds)."""
        return len(self._handles) + self._folder_fds

    def oldest_open_idle_s(self) -> tuple[int, float]:
        """(files open, seconds since the least recently written of them was written; 0 with none).
        O(1): the handles are kept least recently used first, the order they are evicted in."""
        if not self._handles:
            return 0, 0.0
        oldest = next(iter(self._handles.values())).last_used
        return len(self._handles), max(0.0, self._monotonic() - oldest)

    def open_keys(self) -> list[tuple[str, str]]:
        return list(self._handles)


def split_parts(chunks: Sequence[Chunk], budget: int) -> Iterator[Sequence[Chunk]]:
    """`chunks` cut, in order, into runs whose distinct files and folders (the root not counted)
    number at most `budget`; a run is at least one chunk, so one file in a folder under a budget of 1
    is a run of its own. Pure: nothing is opened."""
    if 2 * len(chunks) <= budget:  # every chunk a new file in a new folder still fits
        yield chunks
        return
    keys: set[tuple[str, str]] = set()
    folders: set[tuple[str, ...]] = set()
    start = 0
    for index, chunk in enumerate(chunks):
        target = chunk.target
        new_key = target.key not in keys
        new_folder = bool(target.dirs) and target.dirs not in folders
        if (new_key or new_folder) and index > start and len(keys) + len(folders) + new_key + new_folder > budget:
            yield chunks[start:index]
            start = index
            keys.clear()
            folders.clear()
        keys.add(target.key)
        if target.dirs:
            folders.add(target.dirs)
    yield chunks[start:]


def _joined(root_real: str, path: str) -> str:
    return root_real + "/" + path if root_real != "/" else "/" + path


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def _stamp_order(stamp: Stamp) -> tuple[int, int]:
    return (stamp.micros, stamp.counter)
