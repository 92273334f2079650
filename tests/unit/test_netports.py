"""The test port helpers: a refusing port refuses and cannot be taken; reserved ports are distinct,
not handed out by bind(0) meanwhile, and bindable by a server using SO_REUSEADDR (as grpc does)."""

from __future__ import annotations

import errno
import socket

import pytest

from netports import refusing_port, reserve_ports


def test_a_refusing_port_refuses_and_cannot_be_taken() -> None:
    with refusing_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.socket() as other, pytest.raises(OSError) as caught:
            other.bind(("127.0.0.1", port))
        assert caught.value.errno == errno.EADDRINUSE


def test_reserved_ports_are_distinct_kept_from_bind_0_and_bindable_with_reuseaddr() -> None:
    ports = reserve_ports(3)
    assert len(set(ports)) == 3
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", ports[0]))  # TIME_WAIT keeps it from a socket without SO_REUSEADDR
    for port in ports:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen(1)
