"""The partition proxy itself: forwards both ways, holds bytes while partitioned without closing
the connection, delivers them once healed, and holds back new connections meanwhile."""

from __future__ import annotations

import socket
import threading

from proxy import Proxy


def echo_server() -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_forward_partition_heal() -> None:
    server, thread = echo_server()
    try:
        with Proxy(f"127.0.0.1:{server.getsockname()[1]}") as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
                conn.sendall(b"one")
                assert conn.recv(10) == b"one"
                proxy.partition()
                conn.sendall(b"two")
                conn.settimeout(0.3)
                try:
                    got = conn.recv(10)
                except TimeoutError:
                    got = b""
                assert got == b"", "bytes crossed a partition"
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as late:
                    late.sendall(b"new")
                    proxy.heal()
                    conn.settimeout(5)
                    late.settimeout(5)
                    assert conn.recv(10) == b"two"  # held, not dropped, and the connection lives
                    assert late.recv(10) == b"new"
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        server.close()
        thread.join(5)
        assert not thread.is_alive()
