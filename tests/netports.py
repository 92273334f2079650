"""Ports for tests, without the bind-then-close race: a port that surely refuses connections, and
ports a config file must name before any server binds them.

Where a server can bind port 0 and report its port (`tests/e2e/helpers.py`: `start_node`,
`Node.port`), do that instead; a restart on the same port reuses the port the first start reported.
"""

from __future__ import annotations

import socket


class RefusingPort:
    """A port on which connections are refused until `close()` (or the end of a `with` block, which
    gives the port): it is bound here and never listens, so no other process can take it meanwhile."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._held = socket.socket()
        self._held.bind((host, 0))
        self.port = int(self._held.getsockname()[1])

    def close(self) -> None:
        self._held.close()

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, *exc: object) -> None:
        self.close()


refusing_port = RefusingPort


def reserve_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports for a config file that names its ports in advance (`logstream run`'s
    cluster file: the mediator's port must be known to the streamers). Each port is left in
    TIME_WAIT after one real connection, so for a minute the kernel hands it neither to a socket
    binding port 0 nor to one binding it without SO_REUSEADDR, while the node (grpc binds with
    SO_REUSEADDR) and the run command's SO_REUSEADDR probe still get it. This closes the race of
    a plain bind-then-close helper against every other test's `bind(0)`."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, 0))
            server.listen(1)
            port = int(server.getsockname()[1])
            with socket.create_connection((host, port)) as client:
                accepted, _ = server.accept()
                # the accepting side closes first: the TIME_WAIT stays with the listening port
                accepted.close()
                client.recv(1)
        if port not in ports:
            ports.append(port)
    return ports


def _reserve(host: str, port: int) -> bool:
    """Leave `port` in TIME_WAIT as `reserve_ports` does; False if it cannot be bound now."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((host, port))
        except OSError:
            return False
        server.listen(1)
        with socket.create_connection((host, port)) as client:
            accepted, _ = server.accept()
            accepted.close()
            client.recv(1)
    return True


def reserve_consecutive_ports(count: int, host: str = "127.0.0.1", tries: int = 50) -> list[int]:
    """`count` consecutive ports reserved as `reserve_ports` does (a managed etcd's members take
    their client and peer ports counting up from one port)."""
    for _ in range(tries):
        (first,) = reserve_ports(1, host)
        if first + count - 1 > 65535:
            continue
        if all(_reserve(host, port) for port in range(first + 1, first + count)):
            return list(range(first, first + count))
    raise AssertionError(f"no {count} consecutive free ports in {tries} tries")
