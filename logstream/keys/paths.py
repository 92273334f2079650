"""File keys, and the pure validation of a request's (path, filename) into a target below the root; no I/O.

What this module guarantees is lexical: the target's folders are plain relative segments (no `..`,
no absolute path, no NUL), its filename is not made only of dots, and its names fit the platform's
limits, including the longest rotated name. Symlinks are the writer's business: it opens each
folder relative to its parent without following symlinks (logstream/streamer/opening.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from logstream.keys.names import ROTATED_SUFFIX_MAX, looks_rotated

LOG_SUFFIX = ".log"
# Linux's limits; the writer passes the root file system's actual values.
DEFAULT_NAME_MAX = 255
DEFAULT_PATH_MAX = 4096


class FileKey(NamedTuple):
    """One log file, in normal form: `<root>/<path>/<filename>.log` ("a//./b" is "a/b"); one key, one
    file, one lock, one owner."""

    path: str
    filename: str

    def __str__(self) -> str:
        return f"{self.path}/{self.filename}" if self.path else self.filename


class Problem(enum.Enum):
    """Why a (path, filename) is refused."""

    NUL = "contains a NUL byte"
    EMPTY_FILENAME = "filename is empty"
    ONLY_DOTS = "filename made only of dots"
    SLASH_IN_FILENAME = "filename contains '/'"
    ABSOLUTE = "path is absolute"
    PARENT = "path has a '..' segment"
    ROTATED = "filename has the form of a rotated name"
    FILENAME_TOO_LONG = "filename too long"
    SEGMENT_TOO_LONG = "path segment too long"
    PATH_TOO_LONG = "path and filename too long"


class BadTarget(ValueError):
    """A (path, filename) that must not be written: `problem` says why, the message in words."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Target:
    """Where a (path, filename) request writes: `<root>/<dirs...>/<stem>.log`."""

    dirs: tuple[str, ...]
    stem: str
    # Derived once: the writer looks a target's key up several times per chunk.
    path: str = field(init=False, repr=False, compare=False)
    """The folder relative to the root, normalised ("" for the root itself)."""
    key: FileKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", "/".join(self.dirs))
        object.__setattr__(self, "key", FileKey(self.path, self.stem))

    @classmethod
    def of(cls, key: FileKey) -> Target:
        """The target of a key that came from `validate_target` (its normal form)."""
        return cls(tuple(key.path.split("/")) if key.path else (), key.filename)

    @property
    def name(self) -> str:
        return self.stem + LOG_SUFFIX

    @property
    def relative(self) -> str:
        return "/".join((*self.dirs, self.name))


def validate_target(
    path: str,
    filename: str,
    *,
    root_bytes: int = 0,
    name_max: int = DEFAULT_NAME_MAX,
    path_max: int = DEFAULT_PATH_MAX,
) -> Target:
    """The target of (path, filename), or BadTarget naming why it is refused.

    `root_bytes` is the length of the root's own path, so that the whole path of the longest
    rotated name stays under `path_max`. Empty and "." segments of `path` are dropped, so that
    "a//./b" and "a/b" are one file (and one lock).
    """
    if "\x00" in path:
        raise BadTarget(Problem.NUL, "path contains a NUL byte")
    if "\x00" in filename:
        raise BadTarget(Problem.NUL, "filename contains a NUL byte")
    if not filename:
        raise BadTarget(Problem.EMPTY_FILENAME, "filename is empty")
    if filename.strip(".") == "":
        # ".", ".." and "...": "p/..log" and "p/...log" alias nothing useful and read as folders.
        raise BadTarget(Problem.ONLY_DOTS, f"filename {filename!r} is made only of dots")
    if "/" in filename:
        raise BadTarget(Problem.SLASH_IN_FILENAME, f"filename contains '/': {filename!r} (use path for folders)")
    if path.startswith("/"):
        raise BadTarget(Problem.ABSOLUTE, f"path is absolute: {path!r} (it must be relative to the streamer's root)")
    dirs = tuple(segment for segment in path.split("/") if segment not in ("", "."))
    if ".." in dirs:
        raise BadTarget(Problem.PARENT, f"path has a '..' segment: {path!r}")
    if looks_rotated(filename):
        raise BadTarget(Problem.ROTATED, f"filename {filename!r} has the form of a rotated file's name")
    stem_bytes = len(filename.encode())
    longest_name = stem_bytes + ROTATED_SUFFIX_MAX + len(LOG_SUFFIX)
    if longest_name > name_max:
        limit = name_max - ROTATED_SUFFIX_MAX - len(LOG_SUFFIX)
        raise BadTarget(Problem.FILENAME_TOO_LONG,
                        f"filename is {stem_bytes} bytes long; at most {limit} bytes are allowed")
    total = root_bytes + 1 + longest_name
    for segment in dirs:
        segment_bytes = len(segment.encode())
        if segment_bytes > name_max:
            raise BadTarget(Problem.SEGMENT_TOO_LONG,
                            f"path segment of {segment_bytes} bytes is over the limit of {name_max}")
        total += segment_bytes + 1
    if total >= path_max:
        raise BadTarget(Problem.PATH_TOO_LONG,
                        f"path and filename are too long ({total} bytes with the root; limit {path_max - 1})")
    return Target(dirs, filename)


def is_inside(real: str, root_real: str) -> bool:
    """Whether the resolved path `real` is `root_real` or below it."""
    if root_real == "/":
        return real.startswith("/")
    return real == root_real or real.startswith(root_real + "/")
