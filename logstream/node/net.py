"""gRPC server and channel options shared by every node and client."""

from __future__ import annotations

from logstream.errors import UserError


class ListenError(UserError):
    """A server cannot bind its address (in use, or not an address of this host)."""

# Large batches are the fast path; allow them well past grpc's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # two nodes must never silently share a port
    # Peers keep channels alive with HTTP/2 pings (CHANNEL_OPTIONS: every 20s, even without calls);
    # grpc's server default answers those with GOAWAY "too_many_pings".
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    # grpc's defaults (1s, growing to 120s) leave a node that starts before its peer waiting
    # seconds after the peer is up; cluster peers are near and few, so retry sooner.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def listen_address(host: str, port: int) -> str:
    """`host:port` for grpc's add_*_port, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
