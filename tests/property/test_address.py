"""host:port parsing: every name, IPv4 and bracketed IPv6 address with a port in 1..65535 round-trips;
an unbracketed IPv6 literal, a port outside 1..65535 or a missing part is refused."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.node.address import AddressError, HostPort, parse_address, parse_host_port

_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
names = st.lists(_label, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(names, ipv4, ipv6)
ports = st.integers(1, 65535)


@given(hosts, ports)
def test_round_trip(host: str, port: int) -> None:
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_host_port(text) == HostPort(host, port)
    assert parse_address(f"  {text}\n") == text == str(HostPort(host, port))


@given(ipv6, ports)
def test_an_ipv6_literal_needs_its_brackets(host: str, port: int) -> None:
    with pytest.raises(AddressError):
        parse_host_port(f"{host}:{port}")


@given(hosts, st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_ports_outside_1_to_65535_are_refused(host: str, port: int) -> None:
    with pytest.raises(AddressError):
        parse_host_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


@given(st.text(max_size=30))
def test_anything_accepted_has_a_host_and_a_valid_port(text: str) -> None:
    try:
        address = parse_host_port(text)
    except AddressError:
        return
    assert address.host and 0 < address.port < 65536
    # a host with a colon is exactly an IPv6 literal, written back in brackets
    assert (":" in address.host) == isinstance(_ip(address.host), ipaddress.IPv6Address) == str(address).startswith("[")
    assert parse_host_port(str(address)) == address


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@pytest.mark.parametrize("text", ["::1:8000", "host", "host:", ":80", "[]:80", "[::1]", "h:8o", "h:²", "h:+80",
                                  "a b:80", "[host]:80", "[a:b]:80", "h/x:80", "host:0", "host:65536"])
def test_refused_examples(text: str) -> None:
    with pytest.raises(AddressError):
        parse_host_port(text)
