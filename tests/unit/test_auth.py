"""Who may steer a node (auth.Guard, forward_refusal), the certificate kinds `logstream certs` makes,
the token's text, the rate-limited refusal log, and the probe that tells the original's mediator."""

from __future__ import annotations

import logging

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.commands import certs
from logstream.node.auth import Guard, Peer, call_metadata, forward_refusal, parse_token
from logstream.node.peer import PeerReader, cert_kind
from logstream.node.ratelog import RateLimitedLog
from logstream.streamer.legacy import legacy_from_status

kinds = st.sampled_from(["node", "client", "none"])
tokens = st.sampled_from(["", "t0ken", "other"])


@given(st.sampled_from([None, "t0ken"]), st.booleans(), kinds, tokens)
def test_a_peer_is_a_cluster_node_only_with_every_proof_the_guard_asks_for(
        token: str | None, mutual: bool, kind: str, sent: str) -> None:
    guard = Guard(token, mutual)
    refusal = guard.refusal(Peer("m", sent, kind))  # type: ignore[arg-type]
    expected_ok = (not mutual or kind == "node") and (token is None or sent == token)
    assert (refusal is None) == expected_ok
    assert guard.open == (token is None and not mutual)


@given(st.sampled_from([None, "m1", "m2"]), st.sampled_from(["", "m1", "m2"]), tokens)
def test_a_clustered_streamer_writes_only_its_current_mediators_forwards(
        current: str | None, claimed: str, sent: str) -> None:
    guard = Guard("t0ken")
    refusal = forward_refusal(guard, Peer(claimed, sent, "none"), current)
    ok = sent == "t0ken" and claimed != "" and (current is None or claimed == current)
    assert (refusal is None) == ok


@given(st.integers(0, 3), st.integers(0, 3))
def test_a_forward_must_come_on_the_newest_link_the_streamer_was_pinged_on(current: int, sent: int) -> None:
    refusal = forward_refusal(Guard(), Peer("m1", link=sent), "m1", current)
    assert (refusal is None) == (current == 0 or sent == current)


def test_without_a_guard_only_the_mediator_id_decides() -> None:
    assert forward_refusal(Guard(), Peer("m1"), "m1") is None
    assert forward_refusal(Guard(), Peer(""), "m1") == "not forwarded by a mediator"
    assert "not from the current one" in (forward_refusal(Guard(), Peer("m2"), "m1") or "")


def test_call_metadata_carries_what_is_set() -> None:
    assert call_metadata() == ()
    assert call_metadata("m", "t") == (("x-logstream-mediator", "m"), ("x-logstream-token", "t"))


@pytest.mark.parametrize("text", ["", " \n", "two words", "caf\u00e9"])
def test_a_bad_token_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_token(text)


def test_node_and_client_certificates_are_told_apart() -> None:
    ca = certs.make_ca()
    node = certs.make_cert(ca, ["127.0.0.1"], server=True, client=True)
    client = certs.make_cert(ca, [], server=False, client=True)
    assert cert_kind(node.cert_pem) == "node"
    assert cert_kind(client.cert_pem) == "client"
    assert cert_kind(b"not a certificate") == "client"
    reader = PeerReader()
    assert reader.kind(node.cert_pem) == "node" and reader.kind(node.cert_pem) == "node"


def test_refusals_are_said_once_per_cause_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("t"), "refusing", every_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(1000):
            log.note("no lease", "detail")
        log.note("other")
        assert len(caplog.records) == 2
        now[0] = 61.0
        log.note("no lease")
        assert len(caplog.records) == 3 and "1000 more" in caplog.records[-1].getMessage()
        log.note("no lease")
        log.note("no lease")
        log.flush()
        assert len(caplog.records) == 4 and "2 more" in caplog.records[-1].getMessage()
        log.flush()
        assert len(caplog.records) == 4
    assert log.counts == {"no lease": 1003, "other": 1}


def test_the_originals_mediator_is_told_by_an_unimplemented_status() -> None:
    assert legacy_from_status(grpc.StatusCode.UNIMPLEMENTED) is True
    assert legacy_from_status(None) is False
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.PERMISSION_DENIED):
        assert legacy_from_status(code) is None
