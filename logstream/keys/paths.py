"""Pure validation of a request's (path, filename) into a target below the root; no I/O.

What this module guarantees is lexical: the target's folders are plain relative segments (no `..`,
no absolute path, no NUL), its filename is not made only of dots, and its names fit the platform's
limits, including the longest rotated name. Symlinks are the writer's business: it opens each
folder relative to its parent without following symlinks (see writer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from logstream.streamer.rotation import ROTATED_SUFFIX_MAX, looks_rotated

LOG_SUFFIX = ".log"
# Linux's limits; the writer passes the root file system's actual values.
DEFAULT_NAME_MAX = 255
DEFAULT_PATH_MAX = 4096



class BadTarget(ValueError):
    """A (path, filename) that must not be written; the message names the problem."""


@dataclass(frozen=True)
class Target:
    """Where a (path, filename) request writes: `<root>/<dirs...>/<stem>.log`."""

    dirs: tuple[str, ...]
    stem: str
    # Derived once: the writer looks a target's key up several times per chunk.
    path: str = field(init=False, repr=False, compare=False)
    """The folder relative to the root, normalised ("" for the root itself)."""
    key: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", "/".join(self.dirs))
        object.__setattr__(self, "key", (self.path, self.stem))

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
        raise BadTarget("path contains a NUL byte")
    if "\x00" in filename:
        raise BadTarget("filename contains a NUL byte")
    if not filename:
        raise BadTarget("filename is empty")
    if filename.strip(".") == "":
        # ".", ".." and "...": "p/..log" and "p/...log" alias nothing useful and read as folders.
        raise BadTarget(f"filename {filename!r} is made only of dots")
    if "/" in filename:
        raise BadTarget(f"filename contains '/': {filename!r} (use path for folders)")
    if path.startswith("/"):
        raise BadTarget(f"path is absolute: {path!r} (it must be relative to the streamer's root)")
    dirs = tuple(segment for segment in path.split("/") if segment not in ("", "."))
    if ".." in dirs:
        raise BadTarget(f"path has a '..' segment: {path!r}")
    if looks_rotated(filename):
        raise BadTarget(f"filename {filename!r} has the form of a rotated file's name")
    stem_bytes = len(filename.encode())
    longest_name = stem_bytes + ROTATED_SUFFIX_MAX + len(LOG_SUFFIX)
    if longest_name > name_max:
        limit = name_max - ROTATED_SUFFIX_MAX - len(LOG_SUFFIX)
        raise BadTarget(f"filename is {stem_bytes} bytes long; at most {limit} bytes are allowed")
    total = root_bytes + 1 + longest_name
    for segment in dirs:
        segment_bytes = len(segment.encode())
        if segment_bytes > name_max:
            raise BadTarget(f"path segment of {segment_bytes} bytes is over the limit of {name_max}")
        total += segment_bytes + 1
    if total >= path_max:
        raise BadTarget(f"path and filename are too long ({total} bytes with the root; limit {path_max - 1})")
    return Target(dirs, filename)


def is_inside(real: str, root_real: str) -> bool:
    """Whether the resolved path `real` is `root_real` or below it."""
    if root_real == "/":
        return real.startswith("/")
    return real == root_real or real.startswith(root_real + "/")
