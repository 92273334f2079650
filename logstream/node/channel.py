"""gRPC channels, blocking or asyncio, plaintext or TLS: the one place a channel is built."""

from __future__ import annotations

import enum
import socket
import threading
from collections.abc import Sequence

import grpc

from logstream.node.address import parse_host_port
from logstream.node.net import CHANNEL_OPTIONS

ChannelOptions = Sequence[tuple[str, int | str]]


def with_options(base: ChannelOptions, **overrides: int | str) -> list[tuple[str, int | str]]:
    """`base` with some options replaced (named without the "grpc." prefix, dots as "__")."""
    changed = {f"grpc.{name.replace('__', '.')}": value for name, value in overrides.items()}
    return [(key, changed.pop(key, value)) for key, value in base] + list(changed.items())


def aio_channel(target: str, creds: grpc.ChannelCredentials | None = None,
                options: ChannelOptions = CHANNEL_OPTIONS) -> grpc.aio.Channel:
    """A grpc.aio channel to `target`: TLS with `creds`, plaintext when `creds` is None."""
    if creds is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(target, creds, options=list(options))


def sync_channel(target: str, creds: grpc.ChannelCredentials | None = None,
                 options: ChannelOptions = CHANNEL_OPTIONS) -> grpc.Channel:
    """The blocking twin of aio_channel, for threads and scripts without an event loop."""
    if creds is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, creds, options=list(options))


def handshake_succeeds(target: str, creds: grpc.ChannelCredentials | None, timeout_s: float) -> bool | None:
    """Whether a fresh channel to `target` gets through the connection and TLS/HTTP2 handshake:
    True (READY), False (TRANSIENT_FAILURE: refused, or a handshake the server or we rejected),
    None when neither happened within `timeout_s`. Decided on grpc's connectivity states."""
    settled: list[grpc.ChannelConnectivity] = []
    done = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            settled.append(state)
            done.set()

    channel = sync_channel(target, creds)
    try:
        channel.subscribe(watch, try_to_connect=True)
        if not done.wait(timeout_s):
            return None
        return bool(settled[0] == grpc.ChannelConnectivity.READY)
    finally:
        channel.unsubscribe(watch)
        channel.close()


def accepts_connections(target: str, timeout_s: float) -> bool:
    """Whether a plain TCP connection to `target` (host:port) is accepted."""
    address = parse_host_port(target)
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s):
            return True
    except OSError:
        return False


class Reach(enum.Enum):
    """How far a fresh connection to a target gets."""

    NOT_LISTENING = "nothing accepts connections"
    HANDSHAKE_FAILS = "the port accepts connections but the TLS/HTTP2 handshake fails"
    ANSWERS = "the handshake succeeds"
    UNDECIDED = "undecided"


def probe(target: str, creds: grpc.ChannelCredentials | None, timeout_s: float) -> Reach:
    """Tell a refused connection from a failed handshake (both read UNAVAILABLE to a caller),
    on connectivity states and socket errors, never on message wording."""
    handshake = handshake_succeeds(target, creds, timeout_s)
    if handshake is None:
        return Reach.UNDECIDED
    if handshake:
        return Reach.ANSWERS
    return Reach.HANDSHAKE_FAILS if accepts_connections(target, timeout_s) else Reach.NOT_LISTENING
