"""Server and channel credentials for the three TLS modes (none, server-only, mutual).

`cryptography` (a server dependency) is imported only when a file is checked, so that the client,
which imports this module, stays light; without it, files are checked for the PEM blocks they must
hold, and a key that does not belong to its certificate is left for the TLS handshake to refuse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol

import grpc

from logstream.errors import UserError
from logstream.node.channel import ChannelOptions, aio_channel
from logstream.node.net import ListenError

logger = logging.getLogger(__name__)

__all__ = ["ChannelOptions", "CredentialsError", "ListenError", "NodeTls", "add_port", "channel_credentials",
           "node_channel_credentials", "pem_blocks", "pem_key_problem", "read_certificates", "read_key_pair",
           "read_private_key", "secure_or_insecure_channel", "server_credentials"]

# The name the roles use; one constructor lives in node/channel.py.
secure_or_insecure_channel = aio_channel


class NodeTls(Protocol):
    """What this module reads of a node's settings (the roles' settings models have it): a protocol,
    so that node/ does not import config/ (which uses node/address.py)."""

    @property
    def tls_mode(self) -> Literal["none", "server", "mutual"]: ...
    @property
    def ca(self) -> Path | None: ...
    @property
    def crt(self) -> Path | None: ...
    @property
    def pk(self) -> Path | None: ...


class CredentialsError(UserError):
    """A certificate or key file that cannot be used: the setting naming it (`-crt`), its `path` and
    the `reason`; for a key that does not belong to its certificate, `other` is the certificate's flag
    and path."""

    def __init__(self, flag: str, path: Path | None, reason: str, other: tuple[str, Path] | None = None) -> None:
        self.flag, self.path, self.reason, self.other = flag, path, reason, other
        super().__init__(self.text(lambda flag: flag, " "))

    def text(self, name: Callable[[str], str], separator: str = ": ") -> str:
        """The message with each flag spelled by `name` (e.g. `-crt` -> `tls.crt`)."""
        against = f" {name(self.other[0])} {self.other[1]}" if self.other else ""
        if self.path is None:
            return f"{name(self.flag)} {self.reason}{against}"
        return f"{name(self.flag)}{separator}{self.path}: {self.reason}{against}"


def _read(flag: str, path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CredentialsError(flag, path, "no such file") from None
    except OSError as exc:
        raise CredentialsError(flag, path, f"cannot read: {exc.strerror or exc}") from None


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The complete PEM blocks in `data`: (label, body), e.g. ("CERTIFICATE", b"MIIB...")."""
    return [(m.group(1).decode("ascii"), m.group(2)) for m in _PEM_BLOCK.finditer(data)]


def pem_key_problem(data: bytes) -> str | None:
    """Why `data` is not an unencrypted PEM private key, judged by its blocks alone; None if it looks like one."""
    keys = [(label, body) for label, body in pem_blocks(data) if label.endswith("PRIVATE KEY")]
    if not keys:
        return "not a PEM private key"
    label, body = keys[0]
    # PKCS#8 "ENCRYPTED PRIVATE KEY", or the traditional OpenSSL form's "Proc-Type: 4,ENCRYPTED" header
    if label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in body:
        return "private key is encrypted (give an unencrypted key)"
    return None


def _cryptography() -> ModuleType | None:
    """The `cryptography` package when installed (it comes with the server extra), else None."""
    try:
        import cryptography.hazmat.primitives.serialization
        import cryptography.x509
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "cryptography":
            return None
        raise
    return cryptography


def read_certificates(flag: str, path: Path) -> bytes:
    """The PEM bytes of `path`, checked to hold at least one X.509 certificate."""
    data = _read(flag, path)
    if not any(label == "CERTIFICATE" for label, _ in pem_blocks(data)):
        raise CredentialsError(flag, path, "not a PEM certificate")
    crypto = _cryptography()
    if crypto is not None:
        try:
            crypto.x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CredentialsError(flag, path, "not a PEM certificate") from None
    return data


def read_private_key(flag: str, path: Path) -> bytes:
    """The PEM bytes of `path`, checked to hold an unencrypted private key."""
    data = _read(flag, path)
    problem = pem_key_problem(data)
    if problem is not None:
        raise CredentialsError(flag, path, problem)
    crypto = _cryptography()
    if crypto is not None:
        from cryptography.exceptions import UnsupportedAlgorithm

        try:
            crypto.hazmat.primitives.serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise CredentialsError(flag, path, "private key is encrypted (give an unencrypted key)") from None
        except (ValueError, UnsupportedAlgorithm):
            raise CredentialsError(flag, path, "not a PEM private key") from None
    return data


def read_key_pair(crt: Path, pk: Path) -> tuple[bytes, bytes]:
    """(key, certificate chain) PEM bytes; the key must belong to the chain's first certificate (checked
    when `cryptography` is installed; without it the TLS handshake refuses a mismatched pair)."""
    chain = read_certificates("-crt", crt)
    key = read_private_key("-pk", pk)
    crypto = _cryptography()
    if crypto is None:
        return key, chain
    x509, serialization = crypto.x509, crypto.hazmat.primitives.serialization
    leaf_public = x509.load_pem_x509_certificates(chain)[0].public_key()
    key_public = serialization.load_pem_private_key(key, password=None).public_key()
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf_public.public_bytes(*fmt) != key_public.public_bytes(*fmt):
        raise CredentialsError("-pk", pk, "key does not match the certificate in", other=("-crt", crt))
    return key, chain


def server_credentials(settings: NodeTls) -> grpc.ServerCredentials | None:
    """None for plaintext; server-only TLS; or mutual TLS requiring client certificates from -ca."""
    mode = settings.tls_mode
    if mode == "none":
        return None
    assert settings.crt is not None and settings.pk is not None  # tls_mode guarantees both
    key, chain = read_key_pair(settings.crt, settings.pk)
    if mode == "server":
        return grpc.ssl_server_credentials([(key, chain)])
    if settings.ca is None:  # pragma: no cover - the settings validator rejects this
        raise CredentialsError("-verify-clients", None, "needs -ca")
    root = read_certificates("-ca", settings.ca)
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=root, require_client_auth=True)


def channel_credentials(ca: Path | None, crt: Path | None, pk: Path | None) -> grpc.ChannelCredentials | None:
    """None (plaintext) when nothing is given; else TLS verifying the server with `ca`
    (the system's roots when None) and presenting `crt`/`pk` when both are given."""
    if ca is None and crt is None and pk is None:
        return None
    if (crt is None) != (pk is None):
        given, missing = ("-crt", "-pk") if pk is None else ("-pk", "-crt")
        raise CredentialsError(given, None, f"needs {missing} too (a client certificate needs its key)")
    root = read_certificates("-ca", ca) if ca is not None else None
    if crt is not None and pk is not None:
        key, chain = read_key_pair(crt, pk)
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
    return grpc.ssl_channel_credentials(root_certificates=root)


def node_channel_credentials(settings: NodeTls) -> grpc.ChannelCredentials | None:
    """What a node uses to call other nodes: plaintext when it serves plaintext; otherwise TLS that
    verifies peers with -ca (system roots without it) and presents this node's -crt/-pk (required by
    peers in mutual mode, harmless in server-only mode)."""
    if settings.tls_mode == "none":
        return None
    return channel_credentials(settings.ca, settings.crt, settings.pk)


def add_port(server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials | None) -> int:
    """Bind `address` (host:port; port 0 picks a free one) and return the bound port."""
    try:
        if creds is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, creds)
    except RuntimeError:  # newer grpc raises instead of returning 0
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {address} (address in use or not available here)")
    return int(port)
