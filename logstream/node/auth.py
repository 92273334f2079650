"""Who may steer a node: the call metadata a cluster's nodes attach to the calls they make to
each other (mediator incarnation, cluster token) and the pure decisions on the receiving side.

Two proofs that a caller belongs to the cluster, each required when configured:
- mutual TLS: the peer's certificate is a node's (`logstream certs` gives node certificates the
  serverAuth usage; client certificates have clientAuth only);
- a cluster token: the call carries it in `x-logstream-token`.
A node with neither trusts everyone (and says so at start). Control calls from anyone else are
refused with PERMISSION_DENIED; writes to a clustered streamer that did not come from its current
mediator are refused with FAILED_PRECONDITION (docs/cluster-protocol.md).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

# Metadata keys (lower case, as gRPC requires).
MEDIATOR_HEADER = "x-logstream-mediator"  # the calling mediator's incarnation id
TOKEN_HEADER = "x-logstream-token"  # the cluster token, when the cluster has one
# The mediator's connection (link) to this streamer, numbered within its incarnation: a new link
# after every registration that starts one. Forwards sent on an earlier link are refused.
LINK_HEADER = "x-logstream-link"

Metadata = tuple[tuple[str, str], ...]
# The kind of certificate a TLS peer presented: "none" without (mutual) TLS.
CertKind = Literal["node", "client", "none"]


def call_metadata(mediator_id: str = "", token: str | None = None) -> Metadata:
    """What a node attaches to every call it makes to another node of its cluster."""
    pairs: list[tuple[str, str]] = []
    if mediator_id:
        pairs.append((MEDIATOR_HEADER, mediator_id))
    if token:
        pairs.append((TOKEN_HEADER, token))
    return tuple(pairs)


def new_token() -> str:
    """A fresh cluster token (256 random bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def parse_token(text: str) -> str:
    """The token in a token file's text (surrounding whitespace dropped); ValueError when empty."""
    token = text.strip()
    if not token:
        raise ValueError("the token file is empty")
    if any(ch.isspace() for ch in token) or not token.isprintable() or not token.isascii():
        raise ValueError("a token must be one word of printable ASCII (it travels as gRPC metadata)")
    return token


@dataclass(frozen=True)
class Peer:
    """What a call says about its caller: metadata and the kind of its TLS certificate."""

    mediator_id: str = ""
    token: str = ""
    cert: CertKind = "none"
    link: int = 0


@dataclass(frozen=True)
class Guard:
    """What this node requires of cluster peers: a token (None: none) and/or a node certificate."""

    token: str | None = None
    mutual_tls: bool = False

    @property
    def open(self) -> bool:
        """Neither token nor mutual TLS: anyone who reaches the port counts as a cluster peer."""
        return self.token is None and not self.mutual_tls

    def refusal(self, peer: Peer) -> str | None:
        """Why `peer` is not a node of this cluster (None: it is)."""
        if self.mutual_tls and peer.cert != "node":
            return "a client certificate may only log (via the mediator) and ask for status"
        if self.token is not None and not hmac.compare_digest(peer.token.encode(), self.token.encode()):
            return "missing or wrong cluster token" if peer.token else "the call carries no cluster token"
        return None


def forward_refusal(guard: Guard, peer: Peer, mediator_id: str | None, link: int = 0) -> str | None:
    """Why a clustered streamer whose current mediator is `mediator_id` (None: not pinged yet),
    pinged last on link `link` (0: none named), must not write what `peer` sent (None: it came from
    that mediator on that link, or claims to be the first)."""
    problem = guard.refusal(peer)
    if problem is not None:
        return problem
    if not peer.mediator_id:
        return "not forwarded by a mediator"
    # No mediator yet: nothing is leased either, so the lease check refuses (UNAVAILABLE, retried).
    if mediator_id is not None and peer.mediator_id != mediator_id:
        return f"from mediator {peer.mediator_id}, not from the current one ({mediator_id})"
    # A forward held up in the network (a partition) and delivered after this streamer registered
    # again: its link has ended, and the key may have another owner by now.
    if link and peer.link != link:
        return f"sent on an earlier connection of the mediator (link {peer.link}, now {link})"
    return None
