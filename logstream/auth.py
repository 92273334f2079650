"""Who may steer a node: the call metadata a cluster's nodes attach to the calls they make to
each other (mediator incarnation, cluster token). The checks on the receiving side live with
each role's servicers."""

from __future__ import annotations

# Metadata keys (lower case, as gRPC requires).
MEDIATOR_HEADER = "x-logstream-mediator"  # the calling mediator's incarnation id
TOKEN_HEADER = "x-logstream-token"  # the cluster token, when the cluster has one

Metadata = tuple[tuple[str, str], ...]


def call_metadata(mediator_id: str = "", token: str | None = None) -> Metadata:
    """What a node attaches to every call it makes to another node of its cluster."""
    pairs: list[tuple[str, str]] = []
    if mediator_id:
        pairs.append((MEDIATOR_HEADER, mediator_id))
    if token:
        pairs.append((TOKEN_HEADER, token))
    return tuple(pairs)
