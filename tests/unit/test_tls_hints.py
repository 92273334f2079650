"""A failed handshake is explained from what the server answers, not from grpc's wording: a TLS client
against a plaintext server hears that the server does not speak TLS, a plaintext `status -mediator`
against a TLS server gets `send`'s hints, and no grpc core log line reaches the terminal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from logstream.config.settings import StreamerSettings
from logstream.node import tls
from logstream.node.channel import handshake_hint, speaks_tls, tls_record_header
from netports import refusing_port

if TYPE_CHECKING:
    from tests.conftest import MemoryLogServer, TlsFiles


def test_speaks_tls_reads_the_answer_s_record_header(
        memory_server_factory: Callable[..., MemoryLogServer], tls_files: TlsFiles) -> None:
    plaintext = memory_server_factory()
    server_only = memory_server_factory(tls.server_credentials(
        StreamerSettings.model_validate(dict(crt=tls_files.node_crt, pk=tls_files.node_key))))
    mutual = memory_server_factory(tls.server_credentials(
        StreamerSettings.model_validate(dict(crt=tls_files.node_crt, pk=tls_files.node_key, ca=tls_files.ca))))
    assert speaks_tls(plaintext.target, 10) is False
    assert speaks_tls(server_only.target, 10) is True
    assert speaks_tls(mutual.target, 10) is True
    with refusing_port() as port:
        assert speaks_tls(f"127.0.0.1:{port}", 10) is None


def test_tls_record_header() -> None:
    assert tls_record_header(b"\x16\x03\x03") and tls_record_header(b"\x15\x03\x01")
    assert not tls_record_header(b"") and not tls_record_header(b"\x00\x00\x12")  # an HTTP/2 frame
    assert not tls_record_header(b"\x16\x02\x00")


def test_each_mismatch_gets_its_own_hint() -> None:
    assert "does not speak TLS" in handshake_hint(uses_tls=True, server_tls=False)
    assert "check -ca, -crt and -pk" in handshake_hint(uses_tls=True, server_tls=True)
    assert "check -ca, -crt and -pk" in handshake_hint(uses_tls=True, server_tls=None)
    assert "speaks TLS: give -ca" in handshake_hint(uses_tls=False, server_tls=True)
    assert "may require TLS" in handshake_hint(uses_tls=False, server_tls=None)


def _logstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logstream", *args], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in __import__("os").environ.items() if k != "GRPC_VERBOSITY"})


def test_a_tls_client_against_a_plaintext_server_hears_it_does_not_speak_tls(
        memory_server_factory: Callable[..., MemoryLogServer], tls_files: TlsFiles) -> None:
    plaintext = memory_server_factory()
    done = _logstream("send", "-target", plaintext.target, "-ca", str(tls_files.ca), "-crt", str(tls_files.client_crt),
                      "-pk", str(tls_files.client_key), "-attempts", "1", "-filename", "f", "x")
    assert done.returncode == 1
    [line] = done.stderr.splitlines()  # ours only: no grpc core log line before it
    assert line.startswith("logstream send: error: ") and "the server does not speak TLS" in line, done.stderr


def test_status_against_a_tls_mediator_without_certificates_gets_the_tls_hint(
        memory_server_factory: Callable[..., MemoryLogServer], tls_files: TlsFiles) -> None:
    server_only = memory_server_factory(tls.server_credentials(
        StreamerSettings.model_validate(dict(crt=tls_files.node_crt, pk=tls_files.node_key))))
    done = _logstream("status", "-mediator", server_only.target, "-timeout", "3")
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("logstream status: ") and "the server speaks TLS: give -ca" in line, done.stderr


@pytest.mark.parametrize("verbosity", [None, "INFO"])
def test_a_user_s_grpc_verbosity_is_kept(verbosity: str | None) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "GRPC_VERBOSITY"}
    if verbosity:
        env["GRPC_VERBOSITY"] = verbosity
    code = "import os, logstream.commands.main; print(os.environ['GRPC_VERBOSITY'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60).stdout
    assert out.strip() == (verbosity or "NONE")
