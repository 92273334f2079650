"""The bench's many-keys load: every key belongs to one client, every call's keys and lines are dealt
evenly, every chunk carries a line, and the calls of a client name each of its keys exactly once a round."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from logstream.commands.bench_keys import call_groups, client_keys, key_load, key_name, spread, total_keys

counts = st.integers(min_value=1, max_value=3000)
clients = st.integers(min_value=1, max_value=8)


@given(counts, clients, st.integers(min_value=1, max_value=500))
def test_keys_are_dealt_to_clients_without_overlap(keys: int, n_clients: int, per_folder: int) -> None:
    dealt = [client_keys(keys, n_clients, client, per_folder) for client in range(n_clients)]
    assert all(dealt), "a client without keys would send nothing"
    every = [key for part in dealt for key in part]
    assert set(every) == {key_name(i, per_folder) for i in range(keys)}
    if keys >= n_clients:
        assert len(every) == keys  # a partition: no key written by two clients
        assert max(map(len, dealt)) - min(map(len, dealt)) <= 1


@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=1, max_value=50))
def test_folders_hold_per_folder_keys(keys: int, per_folder: int) -> None:
    folders = Counter(key_name(i, per_folder)[0] for i in range(keys))
    assert len(folders) == -(-keys // per_folder)
    assert all(count <= per_folder for count in folders.values())
    assert len({key_name(i, per_folder) for i in range(keys)}) == keys


@given(counts, st.integers(min_value=1, max_value=5000))
def test_call_groups_partition_the_keys_evenly(count: int, per_call: int) -> None:
    groups = call_groups(count, per_call)
    assert sorted(i for group in groups for i in group) == list(range(count))
    assert len(groups) == -(-count // per_call)
    sizes = [len(group) for group in groups]
    assert max(sizes) <= per_call and max(sizes) - min(sizes) <= 1


@given(st.integers(min_value=0, max_value=100_000), st.integers(min_value=1, max_value=5000))
def test_spread_keeps_every_line(lines: int, parts: int) -> None:
    shares = spread(lines, parts)
    assert len(shares) == parts and sum(shares) == lines and max(shares) - min(shares) <= 1


@given(st.integers(min_value=0, max_value=3000), clients, st.integers(min_value=1, max_value=20),
       st.integers(min_value=0, max_value=3000), st.integers(min_value=1, max_value=5000))
def test_every_chunk_of_every_call_carries_a_line(keys: int, n_clients: int, files: int, per_call: int,
                                                  batch_lines: int) -> None:
    for client in range(n_clients):
        load = key_load(client, n_clients, keys, files, per_call, 100, batch_lines)
        assert all(1 <= len(group) <= batch_lines for group in load.groups)
        assert sorted(i for group in load.groups for i in group) == list(range(len(load.keys)))
        if per_call:
            assert all(len(group) <= per_call for group in load.groups)
    assert total_keys(keys, n_clients, files) == (keys or n_clients * files)


def test_default_layout_keeps_the_names_and_one_call_for_all_files() -> None:
    load = key_load(1, 2, 0, 8, 0, 100, 10_000)
    assert load.keys == tuple(("bench", f"bench-1-{i}") for i in range(8))
    assert load.groups == (tuple(range(8)),)


def test_a_window_of_the_keys_a_call() -> None:
    """25,000 keys a client, 1,000 lines a call: 25 calls of 1,000 keys with one line each."""
    load = key_load(0, 2, 50_000, 0, 0, 100, 1000)
    assert len(load.keys) == 25_000 and len(load.groups) == 25
    assert {len(group) for group in load.groups} == {1000}
    assert spread(1000, 1000) == [1] * 1000
