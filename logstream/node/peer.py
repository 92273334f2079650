"""Reads an `auth.Peer` from a gRPC call: its metadata and the kind of its TLS certificate."""

from __future__ import annotations

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from logstream.node.auth import LINK_HEADER, MEDIATOR_HEADER, TOKEN_HEADER, CertKind, Peer

_CACHE_MAX = 1024


def cert_kind(pem: bytes) -> CertKind:
    """"node" for a certificate good for serving (serverAuth: `logstream certs` node certificates),
    "client" for any other (clientAuth only, or unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, x509.ExtensionNotFound):
        return "client"
    return "node" if ExtendedKeyUsageOID.SERVER_AUTH in usages else "client"


class PeerReader:
    """Peer of a call; certificate kinds cached per certificate (parsing costs ~50µs)."""

    def __init__(self) -> None:
        self._kinds: dict[bytes, CertKind] = {}

    def kind(self, pem: bytes) -> CertKind:
        found = self._kinds.get(pem)
        if found is None:
            found = cert_kind(pem)
            if len(self._kinds) >= _CACHE_MAX:
                self._kinds.clear()
            self._kinds[pem] = found
        return found

    def __call__(self, context: grpc.aio.ServicerContext) -> Peer:
        mediator_id = token = ""
        link = 0
        for key, value in context.invocation_metadata() or ():
            if key == MEDIATOR_HEADER and isinstance(value, str):
                mediator_id = value
            elif key == TOKEN_HEADER and isinstance(value, str):
                token = value
            elif key == LINK_HEADER and isinstance(value, str) and value.isdigit():
                link = int(value)
        certs = context.auth_context().get("x509_pem_cert")
        cert: CertKind = self.kind(certs[0]) if certs else "none"
        return Peer(mediator_id, token, cert, link)
