"""etcd mode's client helpers (logstream/coord/etcd.py) that need no etcd: targets and prefix ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.coord.etcd import prefix_end
from logstream.node.address import channel_target


def test_one_endpoint_is_used_as_it_is_and_several_become_an_address_list() -> None:
    assert channel_target(["etcd.example:2379"]) == "etcd.example:2379"
    assert channel_target(["http://127.0.0.1:2379"]) == "127.0.0.1:2379"
    assert channel_target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert channel_target(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"


@pytest.mark.parametrize("endpoints", [[], [""], ["a.example:1", "b.example:2"], ["127.0.0.1:1", "[::1]:2"]])
def test_endpoints_that_cannot_be_one_target_are_refused(endpoints: list[str]) -> None:
    with pytest.raises(ValueError):
        channel_target(endpoints)


@given(prefix=st.binary(min_size=1, max_size=6), rest=st.binary(max_size=6), other=st.binary(max_size=8))
def test_the_prefix_range_holds_exactly_the_keys_with_that_prefix(prefix: bytes, rest: bytes, other: bytes) -> None:
    end = prefix_end(prefix)
    assert prefix <= prefix + rest < end or end == b"\0"
    if not other.startswith(prefix):
        assert not (prefix <= other < end) or end == b"\0"
