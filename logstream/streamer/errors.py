"""What the writer raises: one exception type per cause, which the servicer maps to a status code."""

from __future__ import annotations

import enum
import errno
import os

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DESCRIPTOR_ERRNOS = {errno.EMFILE, errno.ENFILE}
_REFUSED_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


class WriterError(Exception):
    """A request the writer could not carry out; the subclass says why (the servicer maps it)."""


class RequestProblem(enum.Enum):
    """Why a request is bad input."""

    BAD_TARGET = "a bad (path, filename)"  # keys.paths.Problem says which rule
    LINE_TOO_LONG = "a line over -max-line"
    SYMLINK = "a path through a symlink, or a symlink for the file"
    NOT_A_FOLDER = "a file where a folder is named"
    NOT_A_FILE = "a folder, FIFO or other non-regular file where the log file is named"
    OUTSIDE_ROOT = "a folder that resolves outside the root"


class BadRequest(WriterError):
    """Bad input: nothing was written. `problem` says why; `link` names the symlink met, if any."""

    def __init__(self, problem: RequestProblem, message: str, link: str = "") -> None:
        super().__init__(message)
        self.problem = problem
        self.link = link


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


def mapped(exc: OSError, doing: str, root: object = "the root") -> WriterError:
    """The writer's error for an OSError met while `doing` something."""
    if exc.errno in DESCRIPTOR_ERRNOS:
        return OutOfDescriptors(f"{doing}: {os.strerror(exc.errno or 0)} (lower -max-open-files or raise the "
                                "open-files limit, ulimit -n)")
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"{doing}: {os.strerror(exc.errno or 0)}")
    if exc.errno in _REFUSED_ERRNOS:
        return RootUnusable(f"{doing}: {os.strerror(exc.errno or 0)} (root {root} is read-only or not writable)")
    return StorageError(f"{doing}: {exc.strerror or exc}")
