"""A forward's outcome is decided on its status code alone, in one table."""

from __future__ import annotations

import grpc
import pytest

from logstream.mediator.outcome import WRITTEN, Kind, Outcome, classify

REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.PERMISSION_DENIED}


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_every_status_code_has_one_meaning(code: grpc.StatusCode) -> None:
    expected = (Kind.WRITTEN if code == grpc.StatusCode.OK
                else Kind.RETRY if code == grpc.StatusCode.ABORTED  # a lock held elsewhere: wait, try again
                else Kind.REFUSED if code in REFUSED  # nothing written, the streamer is fine
                else Kind.FAILED)  # unknown outcome (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...)
    assert classify(code) is expected
    outcome = Outcome.of_status(code, "why")
    assert outcome.kind is expected and (outcome is WRITTEN) == (code == grpc.StatusCode.OK)
    assert outcome.definite == (expected in (Kind.REFUSED, Kind.RETRY))


def test_a_failure_without_a_status_is_a_failed_streamer() -> None:
    outcome = Outcome.failed("streamer s1 was removed")
    assert outcome.kind is Kind.FAILED and outcome.code == grpc.StatusCode.UNAVAILABLE and not outcome.definite
