"""host:port addresses: the one parser for flags, file keys, Register requests and clients; etcd's
endpoints as one grpc target."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from logstream.errors import UserError

# Characters that never occur in a host name or an IP literal; refusing them keeps an address
# from smuggling a path, a second address or whitespace into grpc's target syntax.
_FORBIDDEN = frozenset(" \t\r\n/[]@,")


class AddressError(UserError, ValueError):
    """Text that is not a host:port address (pydantic turns a ValueError into a validation error)."""


@dataclass(frozen=True)
class HostPort:
    """A host (name, IPv4 or IPv6 literal, without brackets) and a port in 1..65535."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str) -> HostPort:
    """`name:port`, `1.2.3.4:port` or `[v6]:port` (an IPv6 literal needs its brackets: `::1:8000`
    is ambiguous and refused); the port is a decimal in 1..65535; AddressError otherwise."""
    stripped = text.strip()
    host, sep, port = stripped.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    if (not sep or not bare or any(c in _FORBIDDEN for c in bare)
            or (":" in bare) != bracketed or (bracketed and not _is_ipv6(bare))  # brackets exactly around IPv6
            or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536):
        raise AddressError(f"{text!r}: not a host:port address (e.g. 127.0.0.1:8000 or [::1]:8000)")
    return HostPort(bare, int(port))


def parse_address(text: object) -> str:
    """`text` checked by parse_host_port, in its canonical form (IPv6 bracketed, port without zeros)."""
    return str(parse_host_port(str(text)))


def parse_listen_host_port(text: object) -> HostPort:
    """An address to listen on: host:port as `parse_host_port`, but port 0 (any free port) allowed too."""
    raw = str(text).strip()
    host, sep, port = raw.rpartition(":")
    if not (sep and port.isascii() and port.isdigit() and int(port) == 0):
        return parse_host_port(raw)
    try:
        checked = parse_host_port(f"{host}:1")  # the host by the one rule
    except AddressError:
        raise AddressError(f"{text!r}: not a host:port address (e.g. 127.0.0.1:8000 or [::1]:8000)") from None
    return HostPort(checked.host, 0)


def parse_listen_address(text: object) -> str:
    """`text` checked by parse_listen_host_port, in its canonical form."""
    return str(parse_listen_host_port(text))


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def channel_target(endpoints: Sequence[str]) -> str:
    """A grpc target for etcd's client endpoints (`host:port`, optionally `http://`): one as it is,
    several as an `ipv4:`/`ipv6:` address list (grpc then fails over between them)."""
    cleaned = [e.removeprefix("http://").removeprefix("https://").rstrip("/") for e in endpoints]
    if not cleaned or any(not e for e in cleaned):
        raise ValueError("etcd endpoints must be a non-empty list of host:port")
    if len(cleaned) == 1:
        return cleaned[0]
    families = set()
    for endpoint in cleaned:
        host = endpoint.rpartition(":")[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise ValueError(f"etcd endpoint {endpoint!r}: several endpoints must be IP addresses "
                             "(or give one DNS name that resolves to all members)") from None
    if len(families) != 1:
        raise ValueError("etcd endpoints mix IPv4 and IPv6 addresses")
    return f"ipv{families.pop()}:{','.join(cleaned)}"
