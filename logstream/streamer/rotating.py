"""Rotation on disk: an open file gets a unique rotated name (never overwriting), and retention."""

from __future__ import annotations

import errno
import logging
import os

from logstream.keys.names import Stamp, next_stamp, rotated_name, stamp_of
from logstream.keys.paths import Target

logger = logging.getLogger(__name__)

# Rotated names tried for one rotation before giving up. Each existing name moves the stamp on by
# one, so a few tries cover any honest collision (a file another program left, a clock set back);
# a bound turns a naming bug (the same name every time) into an error instead of an endless loop.
NAME_ATTEMPTS = 1000


def rotate_name(dir_fd: int, target: Target, now_micros: int, last: Stamp | None) -> Stamp:
    """Link the target's file to its next free rotated name after `last` (the newest rotated name
    on disk when None) and unlink its current name; the stamp used. OSError on failure, EEXIST
    when NAME_ATTEMPTS names in a row were taken (nothing renamed then)."""
    if last is None:
        last = max((stamp for _, stamp in rotated(dir_fd, target)), default=None)
    stamp = next_stamp(now_micros, last)
    for _ in range(NAME_ATTEMPTS):
        name = rotated_name(target.stem, stamp.micros, stamp.counter)
        try:
            # link() fails when the name exists: a rotated file is never overwritten.
            os.link(target.name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            stamp = next_stamp(stamp.micros, stamp)
            continue
        os.unlink(target.name, dir_fd=dir_fd)
        return stamp
    raise OSError(errno.EEXIST, f"{NAME_ATTEMPTS} rotated names in a row already exist (the last {name!r})")


def rotated(dir_fd: int, target: Target) -> list[tuple[str, Stamp]]:
    """The rotated files of the target in its folder, with their stamps."""
    found = []
    for name in os.listdir(dir_fd):
        stamp = stamp_of(target.stem, name)
        if stamp is not None:
            found.append((name, stamp))
    return found


def prune(dir_fd: int, target: Target, keep: int) -> None:
    """Keep the newest `keep` rotated files of the target; a failure is logged, not raised."""
    try:
        old = sorted(rotated(dir_fd, target), key=lambda item: item[1])
        for name, _ in old[: max(0, len(old) - keep)]:
            os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        logger.error("retention in %s failed: %s", target.path or ".", exc)
