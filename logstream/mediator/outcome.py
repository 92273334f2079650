"""A forward's outcome, classified once from its status code: written, refused, retry, or failed."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc

from logstream.keys.chunks import Chunk


class Kind(enum.Enum):
    WRITTEN = "written"
    # Definite refusals: nothing of the forward was written because of this status, and the
    # streamer is fine. REFUSED goes back to the caller with its code; RETRY (a file lock held
    # by another process) is tried again, at the same owner, until -handoff-wait runs out.
    REFUSED = "refused"
    RETRY = "retry"
    # The outcome is unknown or the streamer unusable: it is removed, and the lines wait for
    # their keys' next owner (at-least-once).
    FAILED = "failed"


_KIND_OF = {
    grpc.StatusCode.OK: Kind.WRITTEN,
    grpc.StatusCode.ABORTED: Kind.RETRY,
    grpc.StatusCode.INVALID_ARGUMENT: Kind.REFUSED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Kind.REFUSED,
    grpc.StatusCode.FAILED_PRECONDITION: Kind.REFUSED,
    grpc.StatusCode.OUT_OF_RANGE: Kind.REFUSED,
    grpc.StatusCode.PERMISSION_DENIED: Kind.REFUSED,
}


def classify(code: grpc.StatusCode) -> Kind:
    """What a forward's final status means; every status not listed is a failed streamer."""
    return _KIND_OF.get(code, Kind.FAILED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One forward's outcome for each caller in it: `code` is the streamer's status (UNAVAILABLE
    for a failure without one), `details` says why in words, for logs and the caller."""

    kind: Kind
    code: grpc.StatusCode
    details: str = ""
    # etcd mode: the streamer that owns the key, as a FAILED_PRECONDITION refusal names it in its
    # trailing metadata (coord/gate.py); "" when the refusal names none.
    owner: str = ""

    @staticmethod
    def of_status(code: grpc.StatusCode, details: str, owner: str = "") -> Outcome:
        return WRITTEN if code == grpc.StatusCode.OK else Outcome(classify(code), code, details or code.name, owner)

    @staticmethod
    def failed(details: str) -> Outcome:
        return Outcome(Kind.FAILED, grpc.StatusCode.UNAVAILABLE, details)

    @property
    def definite(self) -> bool:
        """Nothing was written because of this status, and the streamer is fine."""
        return self.kind is Kind.REFUSED or self.kind is Kind.RETRY

    def __str__(self) -> str:
        return self.details if self.kind is Kind.FAILED else f"{self.code.name}: {self.details}"


WRITTEN = Outcome(Kind.WRITTEN, grpc.StatusCode.OK)
