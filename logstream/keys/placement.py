"""Rendezvous (highest-random-weight) placement of file keys over streamers: pure functions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from logstream.keys.paths import FileKey


def weight(key: FileKey, streamer_id: str) -> int:
    """The pseudo-random score of `streamer_id` for `key`; the highest score owns the key.

    A keyed 64-bit BLAKE2b: stable across processes and Python versions (unlike `hash()`), and the
    NUL separators keep ("a", "bc") and ("ab", "c") apart.
    """
    digest = hashlib.blake2b(
        f"{key.path}\0{key.filename}\0{streamer_id}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


def place(key: FileKey, streamers: Iterable[str]) -> str | None:
    """The streamer with the highest weight for `key`; None when there is none.

    Ties (2^-64 likely) go to the larger id so that the result never depends on the order given.
    """
    best: tuple[int, str] | None = None
    for streamer in streamers:
        score = (weight(key, streamer), streamer)
        if best is None or score > best:
            best = score
    return None if best is None else best[1]
