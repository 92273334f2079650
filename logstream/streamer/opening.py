"""Opening below the root without following symlinks: the root held open, folders walked segment by
segment, files opened and locked."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from logstream.keys.paths import Target, is_inside
from logstream.streamer.errors import (
    DESCRIPTOR_ERRNOS,
    BadRequest,
    FileLocked,
    RequestProblem,
    RootUnusable,
    mapped,
)
from logstream.streamer.handles import Folder, Handle, OpenFiles, WriterStats

logger = logging.getLogger(__name__)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone put in the root must not hang the server.
# O_RDWR (not O_WRONLY): at open, the last byte is read to repair a line a crash left unterminated.
_FILE_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A file whose name is replaced between our open and our lock is opened again, this many times at most.
_OPEN_ATTEMPTS = 5


def real_path(fd: int) -> str:
    """The kernel's name for an open descriptor."""
    return os.readlink(f"/proc/self/fd/{fd}")


def walk_dirs(root_fd: int, root_real: str, target: Target, *, create: bool, root: object) -> int | None:
    """A descriptor of the target's folder, opened one segment at a time relative to its parent,
    never through a symlink, and proven to lie in the root. With `create` missing folders are
    made; without, a missing one gives None (nothing below it exists). BadRequest for a symlink, a
    file where a folder is named, or a folder outside the root."""
    doing = f"cannot {'create' if create else 'open'} folder {target.path!r}"
    try:
        current = os.dup(root_fd)
    except OSError as exc:
        raise mapped(exc, doing, root) from None
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
                child = os.open(segment, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            except FileNotFoundError:
                if create:
                    raise
                os.close(current)
                return None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise _not_a_folder(target, depth, current) from None
            os.close(current)
            current = child
            if not is_inside(real_path(current), root_real):
                raise BadRequest(RequestProblem.OUTSIDE_ROOT,
                                 f"path {target.path!r} resolves outside the root (through a symlink)")
        return current
    except OSError as exc:
        os.close(current)
        raise mapped(exc, doing, root) from None
    except BaseException:
        os.close(current)
        raise


def _not_a_folder(target: Target, depth: int, parent_fd: int) -> BadRequest:
    """The refusal for the `depth`-th folder of `target` that could not be opened as a folder
    without following symlinks: a symlink (named) or a file."""
    segment = target.dirs[depth - 1]
    if stat.S_ISLNK(os.stat(segment, dir_fd=parent_fd, follow_symlinks=False).st_mode):
        link = "/".join(target.dirs[:depth])
        return BadRequest(RequestProblem.SYMLINK, f"path {target.path!r} passes through the symlink {link!r} (in "
                          "the root); paths through symlinks are refused", link=link)
    return BadRequest(RequestProblem.NOT_A_FOLDER, f"path {target.path!r}: {segment!r} is a file, not a folder",
                      link="")


def open_locked(dir_fd: int, target: Target, root: object) -> tuple[int, int]:
    """Open and lock the target file in its folder; (fd, size). BadRequest for a symlink or a
    non-regular file, FileLocked when another process holds its lock."""
    for _ in range(_OPEN_ATTEMPTS):
        try:
            fd = os.open(target.name, _FILE_FLAGS, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BadRequest(RequestProblem.SYMLINK, f"{target.relative} is a symlink; refusing to follow it",
                                 link=target.relative) from None
            if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
                raise BadRequest(RequestProblem.NOT_A_FILE,
                                 f"{target.relative} exists and is not a regular file") from None
            raise mapped(exc, f"cannot open {target.relative}", root) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BadRequest(RequestProblem.NOT_A_FILE, f"{target.relative} exists and is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
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
            return fd, _terminate_last_line(fd, info.st_size, target, root)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
    raise FileLocked(f"{target.relative} keeps being replaced by another process")


def _terminate_last_line(fd: int, size: int, target: Target, root: object) -> int:
    """A file whose last line has no newline (a crash mid-write, another program) gets one, so
    that our first line is not glued to it; the file's size after that."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    try:
        os.write(fd, b"\n")
    except OSError as exc:
        raise mapped(exc, f"cannot terminate the last line of {target.relative}", root) from None
    logger.warning("%s ended with an unterminated line (%d bytes); added a newline before appending",
                   target.relative, size)
    return size + 1


class Opener:
    """Opens the writer's files: holds the root open (and re-opens it when it is deleted or replaced),
    shares each open folder among its files, and counts refusals in `stats`. Every descriptor it
    opens is accounted in `files`, under their common cap."""

    def __init__(self, root: Path, files: OpenFiles, stats: WriterStats) -> None:
        self.root = root.absolute()
        self.files = files
        self.stats = stats
        root.mkdir(parents=True, exist_ok=True)
        self.root_fd = os.open(root, DIR_FLAGS)
        self.root_ok = True  # False while the root is gone and cannot be re-created
        self.name_max = os.fpathconf(self.root_fd, "PC_NAME_MAX")
        self.path_max = os.fpathconf(self.root_fd, "PC_PATH_MAX")
        self._adopt_root(self.root_fd)
        self.root_checked = False  # whether the root's identity was checked in the current part
        self.call = 0  # counts write calls, so that a folder's place is checked once per call

    def _adopt_root(self, fd: int) -> None:
        self.root_fd = fd
        self.root_folder = Folder((), fd)
        self.root_id = _identity(os.fstat(fd))
        self.root_real = real_path(fd)
        self.root_bytes = len(os.fsencode(self.root_real))

    def close(self) -> None:
        os.close(self.root_fd)

    # -- the root -----------------------------------------------------------------------------------

    def check_root(self) -> None:
        """Make sure the root path is still the folder we hold (one stat); when it was deleted or
        replaced, drop every handle and open it afresh, re-creating it if needed. RootUnusable when
        that fails: then every request fails the same way until the root is back."""
        try:
            if _identity(os.stat(self.root)) == self.root_id:
                self.root_ok = True
                return
        except OSError:
            pass
        self._reopen_root()

    def _reopen_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, DIR_FLAGS)
        except OSError as exc:
            if exc.errno in DESCRIPTOR_ERRNOS:  # the root is fine, we are short of descriptors
                raise mapped(exc, f"cannot open the root {self.root}", self.root) from None
            if self.root_ok:
                logger.error("root %s is gone and cannot be re-created: %s; refusing writes until it is back",
                             self.root, exc.strerror or exc)
            self.root_ok = False
            self.files.close_all()
            raise RootUnusable(f"root {self.root} is gone and cannot be re-created: {exc.strerror or exc}") from None
        closed = self.files.close_all()
        os.close(self.root_fd)
        self._adopt_root(fd)
        self.root_ok = True
        logger.warning("root %s was deleted or replaced: opened it afresh (%d files that had lost their names "
                       "closed)", self.root, closed)

    # -- files and folders ------------------------------------------------------------------------

    def open(self, target: Target, now: float, sync_dir: bool) -> Handle:
        """Open, check and lock the target's file (making room under the cap first); with `sync_dir`
        its folder is fsynced too, so that the file's name survives a crash as well as its bytes."""
        if not self.root_checked:  # once per part: a stat of the root path, before opening a file
            self.check_root()
            self.root_checked = True
        folder = self._folder(target)
        try:
            self.files.make_room(1)
            fd, size = self.open_locked(folder.fd, target)
        except BaseException:
            self.files.release_folder(folder)
            raise
        handle = Handle(target, fd, folder, size, now)
        if sync_dir:
            self.sync_dir(handle)
        self.files.handles[target.key] = handle
        self.stats.opened += 1
        return handle

    def open_locked(self, dir_fd: int, target: Target) -> tuple[int, int]:
        """`open_locked`, counted in the stats."""
        try:
            return open_locked(dir_fd, target, self.root)
        except BadRequest:
            self.stats.rejected += 1
            raise
        except FileLocked:
            self.stats.locked += 1
            raise

    def sync_dir(self, handle: Handle) -> None:
        try:
            self.files.syncs.full(handle.dir_fd)
        except OSError as exc:
            self.files.drop(handle, sync=False)
            raise mapped(exc, f"fsync of folder {handle.target.path or '.'}", self.root) from None

    def _folder(self, target: Target) -> Folder:
        """The target's folder, shared with the open files in it or walked afresh; one more ref."""
        if not target.dirs:
            return self.root_folder
        folders = self.files.folders
        folder = folders.get(target.dirs)
        if folder is not None and folder.checked == self.call:
            folder.refs += 1
            return folder
        if folder is not None:
            # Still where its path says (not deleted or moved)? Checked once per call, as an open
            # file's name is (Writer._live_handle). The kernel's name for the folder must be exactly
            # root/path; otherwise it is walked afresh (its files keep the old one).
            try:
                here = real_path(folder.fd) == _joined(self.root_real, target.path)
            except OSError:
                here = False
            if here:
                folder.refs += 1
                folder.checked = self.call
                return folder
            del folders[target.dirs]
        self.files.make_room(2)  # the folder and its file
        fd = self._walk_dirs(target, create=True)
        assert fd is not None  # with create, a missing folder is made
        folder = Folder(target.dirs, fd, self.call)
        self.files.add_folder(folder)
        return folder

    def refuse_symlinks(self, target: Target) -> None:
        """BadRequest if an existing component of the target's path is a symlink; creates nothing."""
        if target.dirs:
            fd = self._walk_dirs(target, create=False)
            if fd is not None:
                os.close(fd)

    def _walk_dirs(self, target: Target, create: bool) -> int | None:
        try:
            return walk_dirs(self.root_fd, self.root_real, target, create=create, root=self.root)
        except BadRequest:
            self.stats.rejected += 1
            raise


def _joined(root_real: str, path: str) -> str:
    return root_real + "/" + path if root_real != "/" else "/" + path


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)
