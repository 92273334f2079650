"""The writer's descriptors: open files and their shared folders under one cap, least recently used first."""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from logstream.keys.chunks import Chunk
from logstream.keys.names import Stamp
from logstream.keys.paths import FileKey, Target

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["never", "always", "interval"]


@dataclass
class WriterStats:
    """The writer's counters since start (the streamer's metrics and Stats read them)."""

    lines: int = 0
    bytes: int = 0
    rotations: int = 0
    opened: int = 0
    write_errors: int = 0
    locked: int = 0
    rejected: int = 0


class Folder:
    """An open folder below the root, shared by the open files in it (`refs` of them)."""

    __slots__ = ("dirs", "fd", "refs", "checked")

    def __init__(self, dirs: tuple[str, ...], fd: int, checked: int = 0) -> None:
        self.dirs = dirs
        self.fd = fd
        self.refs = 1
        self.checked = checked  # the write call in which it was last found where its path says


class Handle:
    """An open, locked log file and its folder."""

    __slots__ = ("target", "fd", "folder", "dir_fd", "size", "last_used", "dirty", "last_stamp")

    def __init__(self, target: Target, fd: int, folder: Folder, size: int, now: float) -> None:
        self.target = target
        self.fd = fd
        self.folder: Folder | None = folder  # None once dropped
        self.dir_fd = folder.fd
        self.size = size
        self.last_used = now
        self.dirty = False
        self.last_stamp: Stamp | None = None


class Syncs:
    """Every fdatasync/fsync of the writer, timed for `logstream_streamer_fsync_seconds`."""

    def __init__(self) -> None:
        self.observe: Callable[[float], None] | None = None

    def data(self, fd: int) -> None:
        started = time.perf_counter()
        os.fdatasync(fd)
        self._seen(started)

    def full(self, fd: int) -> None:
        started = time.perf_counter()
        os.fsync(fd)
        self._seen(started)

    def _seen(self, started: float) -> None:
        if self.observe is not None:
            self.observe(time.perf_counter() - started)


class OpenFiles:
    """Every open file (by key, least recently used first) and folder, and the descriptors they hold.

    `pinned` keys are those the current part of a write needs, `held` those a request written in
    slices holds (see Writer.hold): neither is closed to make room."""

    def __init__(self, cap: int, fsync: FsyncPolicy) -> None:
        self.cap = cap
        self.fsync = fsync
        self.syncs = Syncs()
        self.handles: OrderedDict[FileKey, Handle] = OrderedDict()
        # Open folders by their path below the root; the root's own files use the root's descriptor.
        self.folders: dict[tuple[str, ...], Folder] = {}
        self.folder_fds = 0  # folder descriptors open (cached or still held by a file)
        self.pinned: set[FileKey] = set()
        self.held: set[FileKey] = set()

    @property
    def descriptors(self) -> int:
        return len(self.handles) + self.folder_fds

    def make_room(self, needed: int) -> None:
        """Close least-recently-used files (not pinned nor held ones) until `needed` more
        descriptors fit under the cap."""
        handles = self.handles
        skipped = 0
        while handles and len(handles) + self.folder_fds + needed > self.cap:
            key, handle = next(iter(handles.items()))
            if key in self.pinned or key in self.held:
                skipped += 1
                if skipped > len(handles):
                    return  # everything left is in use (what is in use fits, unless the cap is 1)
                handles.move_to_end(key)
                continue
            self.drop(handle, sync=True)

    def add_folder(self, folder: Folder) -> None:
        self.folder_fds += 1
        self.folders[folder.dirs] = folder

    def release_folder(self, folder: Folder) -> None:
        if folder.dirs == ():
            return  # the root's descriptor is the writer's own
        folder.refs -= 1
        if folder.refs == 0:
            if self.folders.get(folder.dirs) is folder:
                del self.folders[folder.dirs]
            os.close(folder.fd)
            self.folder_fds -= 1

    def drop(self, handle: Handle, *, sync: bool) -> None:
        """Close and unlock a handle and forget it."""
        if self.handles.get(handle.target.key) is handle:
            del self.handles[handle.target.key]
        if handle.fd >= 0:
            if sync and handle.dirty and self.fsync != "never":
                try:
                    self.syncs.data(handle.fd)
                except OSError as exc:
                    logger.error("fsync of %s failed at close: %s", handle.target.relative, exc)
            os.close(handle.fd)
            handle.fd = -1
        if handle.folder is not None:
            self.release_folder(handle.folder)
            handle.folder = None
            handle.dir_fd = -1

    def close_idle(self, cutoff: float) -> int:
        """Close the files last used at or before `cutoff`; how many."""
        closed = 0
        while self.handles:
            handle = next(iter(self.handles.values()))
            if handle.last_used > cutoff:
                break
            self.drop(handle, sync=True)
            closed += 1
        return closed

    def close_all(self) -> int:
        """Flush, unlock and close every open file; how many."""
        handles = list(self.handles.values())
        for handle in handles:
            self.drop(handle, sync=True)
        return len(handles)


def split_parts(chunks: Sequence[Chunk], budget: int) -> Iterator[Sequence[Chunk]]:
    """`chunks` cut, in order, into runs whose distinct files and folders (the root not counted)
    number at most `budget`; a run is at least one chunk, so one file in a folder under a budget of 1
    is a run of its own. Pure: nothing is opened."""
    if 2 * len(chunks) <= budget:  # every chunk a new file in a new folder still fits
        yield chunks
        return
    keys: set[FileKey] = set()
    folders: set[str] = set()
    start = 0
    for index, chunk in enumerate(chunks):
        key = chunk.key
        new_key = key not in keys
        new_folder = bool(key.path) and key.path not in folders
        if (new_key or new_folder) and index > start and len(keys) + len(folders) + new_key + new_folder > budget:
            yield chunks[start:index]
            start = index
            keys.clear()
            folders.clear()
        keys.add(key)
        if key.path:
            folders.add(key.path)
    yield chunks[start:]
