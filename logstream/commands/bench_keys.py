"""Which (path, filename) keys each `logstream bench` client writes, and how one call's lines spread over them (pure).

Two layouts: the default gives each client its own `--files` keys, all named in every call; `--keys N`
numbers N keys across the whole run (key i: folder `bench/d<i // per_folder>`, file `k<i>`), deals
key i to client i % clients, and has each call name a window of the client's keys, the next call the
next window, so that every key is written in turn ("one file per tenant and day").
"""

from __future__ import annotations

from dataclasses import dataclass

from logstream.keys.paths import FileKey


@dataclass(frozen=True)
class KeyLoad:
    """The keys of one client and the calls that name them: call j carries one chunk per key in groups[j]."""

    keys: tuple[FileKey, ...]
    groups: tuple[tuple[int, ...], ...]  # indexes into keys; every key in exactly one group


def key_name(index: int, per_folder: int) -> FileKey:
    return FileKey(f"bench/d{index // per_folder}", f"k{index}")


def client_keys(total_keys: int, clients: int, client: int, per_folder: int) -> tuple[FileKey, ...]:
    """Key i goes to client i % clients; with fewer keys than clients, clients share them (never none)."""
    span = max(total_keys, clients)
    return tuple(key_name(index % total_keys, per_folder) for index in range(client, span, clients))


def per_client_files(client: int, files: int) -> tuple[FileKey, ...]:
    """The default layout: `files` keys of the client's own, the names earlier versions of the bench used."""
    return tuple(FileKey("bench", f"bench-{client}-{index}") for index in range(files))


def call_groups(count: int, per_call: int) -> tuple[tuple[int, ...], ...]:
    """0..count-1 dealt round robin into the fewest groups of at most `per_call` (sizes differ by one at most)."""
    groups = -(-count // per_call)
    return tuple(tuple(range(group, count, groups)) for group in range(groups))


def spread(lines: int, parts: int) -> list[int]:
    """`lines` over `parts` chunks, the first ones one line longer when it does not divide."""
    base, extra = divmod(lines, parts)
    return [base + 1 if index < extra else base for index in range(parts)]


def key_load(client: int, clients: int, keys: int, files: int, per_call: int, per_folder: int,
             batch_lines: int) -> KeyLoad:
    """One client's load: `keys` > 0 selects the --keys layout, else `files` keys of its own, all in each call.

    A call never names more keys than it has lines, so that every chunk carries at least one line.
    """
    names = client_keys(keys, clients, client, per_folder) if keys else per_client_files(client, files)
    window = min(per_call or len(names), len(names), batch_lines)
    return KeyLoad(names, call_groups(len(names), window))


def total_keys(keys: int, clients: int, files: int) -> int:
    """Distinct keys a run writes."""
    return keys if keys else clients * files
