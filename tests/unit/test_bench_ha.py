"""Which routing tiers `logstream bench --mediators/--workers/--etcd/--embedded` measures, and how its
clients spread over several mediators (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.commands.bench_client import client_targets
from logstream.commands.bench_ha import Scenario, parse_counts, plan_scenarios
from logstream.commands.bench_nodes import cpu_seconds
from logstream.config.flags import UsageError

EMBEDDED = Scenario(1, False)


@pytest.mark.parametrize(("mediators", "workers", "etcd", "embedded", "expected"), [
    ([1], [], False, False, [EMBEDDED]),  # M = 1 alone: today's single mediator
    ([1], [], True, False, [Scenario(1, True)]),
    ([0, 1, 2], [], False, False, [EMBEDDED, Scenario(1, True), Scenario(2, True)]),  # M > 1 implies etcd
    ([1, 2], [], False, True, [EMBEDDED, Scenario(1, True), Scenario(2, True)]),
    ([0, 1], [2], False, False, [EMBEDDED, Scenario(1, True), Scenario(2, True, one_port=True)]),
    ([2], [2, 3], False, False, [Scenario(2, True), Scenario(2, True, True), Scenario(3, True, True)]),
])
def test_scenarios(mediators: list[int], workers: list[int], etcd: bool, embedded: bool,
                   expected: list[Scenario]) -> None:
    assert plan_scenarios(mediators, workers, etcd, embedded) == expected


def test_a_setup_named_twice_is_refused() -> None:
    with pytest.raises(UsageError):
        plan_scenarios([0, 1], [], False, False)  # both the embedded mediator
    with pytest.raises(UsageError):
        plan_scenarios([2, 2], [], False, False)


def test_names_say_mode_and_ports() -> None:
    assert [s.name for s in (EMBEDDED, Scenario(1, True), Scenario(2, True), Scenario(2, True, True))] == [
        "embedded, 1 mediator", "etcd, 1 mediator", "etcd, 2 mediators", "etcd, 2 workers on one port"]


@pytest.mark.parametrize("text", ["", "1,", "a", "1.5", "-1", "1,,2"])
def test_counts_must_be_whole_numbers(text: str) -> None:
    with pytest.raises(UsageError):
        parse_counts(text, "--mediators", 0)


def test_workers_start_at_two() -> None:
    assert parse_counts("2, 3", "--workers", 2) == [2, 3]
    with pytest.raises(UsageError):
        parse_counts("1", "--workers", 2)


@given(st.lists(st.from_regex(r"[a-z]{1,5}:[0-9]{1,5}", fullmatch=True), min_size=1, max_size=5, unique=True),
       st.integers(0, 50))
def test_each_client_tries_every_target_starting_with_its_own(targets: list[str], client: int) -> None:
    order = client_targets(",".join(targets), client)
    assert sorted(order) == sorted(targets)
    assert order[0] == targets[client % len(targets)]
    # consecutive clients start on consecutive targets: n clients cover n mediators
    assert {client_targets(",".join(targets), c)[0] for c in range(len(targets))} == set(targets)


def test_cpu_seconds_counts_this_process_as_os_times_does() -> None:
    import os

    sum(i * i for i in range(2_000_000))  # some CPU time
    mine = cpu_seconds(os.getpid())
    times = os.times()
    assert mine > 0 and abs(mine - (times.user + times.system)) < 0.1
    assert cpu_seconds(2**22 + 12345) == 0.0  # beyond pid_max's default: no such process
