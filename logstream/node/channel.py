"""gRPC channels, blocking or asyncio, plaintext or TLS: the one place a channel is built."""

from __future__ import annotations

import enum
import socket
import ssl
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


# The first byte of a TLS record a server answers a ClientHello with: a handshake (ServerHello) or an
# alert; then the protocol's major version, 3 for SSL 3.0 and every TLS version.
_TLS_RECORD_TYPES = (0x15, 0x16)
_TLS_MAJOR_VERSION = 0x03


def speaks_tls(target: str, timeout_s: float) -> bool | None:
    """Whether the server at `target` answers a TLS ClientHello with a TLS record (True), or with
    anything else or by closing (False: e.g. a plaintext HTTP/2 server); None when it cannot be asked
    (refused, timed out). Decided on the bytes of the answer's record header, not on any message."""
    address = parse_host_port(target)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the record layer is looked at: no certificate matters
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    hello = context.wrap_bio(incoming, outgoing)
    try:
        hello.do_handshake()
    except ssl.SSLWantReadError:  # the ClientHello is written to `outgoing`, waiting for an answer
        pass
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s) as sock:
            sock.sendall(outgoing.read())
            answer = b""
            while len(answer) < 3:
                chunk = sock.recv(3 - len(answer))
                if not chunk:
                    break
                answer += chunk
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:
        return False  # a plaintext server that resets on a ClientHello
    except OSError:
        return None
    return tls_record_header(answer)


def tls_record_header(answer: bytes) -> bool:
    """Whether `answer` starts like a TLS record (type handshake or alert, major version 3)."""
    return len(answer) >= 2 and answer[0] in _TLS_RECORD_TYPES and answer[1] == _TLS_MAJOR_VERSION


def handshake_hint(uses_tls: bool, server_tls: bool | None) -> str:
    """What to check when the connection is accepted but the handshake fails, knowing whether this
    client spoke TLS and whether the server does (None: unknown)."""
    if uses_tls and server_tls is False:
        return "the server does not speak TLS (it serves plaintext): leave out -ca, -crt and -pk"
    if uses_tls:
        return ("TLS: check -ca, -crt and -pk against the server's certificates; a mutual-TLS server "
                "needs -crt and -pk")
    if server_tls:
        return "the server speaks TLS: give -ca (the CA that signed its certificate), and -crt/-pk for mutual TLS"
    return "the server may require TLS: give -ca, and -crt/-pk for mutual TLS"


def explain_failed_connection(target: str, creds: grpc.ChannelCredentials | None, uses_tls: bool,
                              timeout_s: float) -> str | None:
    """After an UNAVAILABLE: a hint when a fresh connection is accepted but its handshake fails (TLS on
    one side only, or certificates that do not match); None when that is not what happened."""
    if probe(target, creds, timeout_s) is not Reach.HANDSHAKE_FAILS:
        return None
    return handshake_hint(uses_tls, speaks_tls(target, timeout_s))
