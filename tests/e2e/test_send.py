"""`logstream send` and the Python clients end to end: real `logstream streamer` and `logstream send`
processes on 127.0.0.1, plaintext and mutual TLS; lines land in the streamer's files, errors exit
with one line (2: bad request, 1: server or network)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import logstream_command, start_node
from netports import refusing_port

from logstream.client import SyncLogClient
from logstream.handler import LogstreamHandler

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.e2e


def _send(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*logstream_command(), "send", *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


def _streamer(root: Path, *tls: str) -> list[str]:
    return ["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", "s1", *tls]


def test_send_to_a_plaintext_streamer(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(_streamer(root)) as node:
        lines = [f"event {n} é" for n in range(10)]
        done = _send(["-target", node.address, "-path", "app/web", "-filename", "access", "-batch-lines", "3"],
                     "\n".join(lines) + "\n")
        assert (done.returncode, done.stderr) == (0, f"sent 10 lines to {node.address}\n")
        done = _send(["--target", node.address, "--path=app/web", "--filename", "access", "last", "--", "-dash"])
        assert done.returncode == 0, done.stderr
        assert (root / "app/web/access.log").read_text() == "\n".join([*lines, "last", "-dash"]) + "\n"

        bad = _send(["-target", node.address, "-path", "../escape", "-filename", "x", "nope"])
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        assert bad.stderr.startswith(f"logstream send: error: {node.address}: INVALID_ARGUMENT: ")
        assert "'..'" in bad.stderr
        assert not (tmp_path / "escape").exists()

        handler = LogstreamHandler(node.address, "app", "python", flush_interval_s=0.05)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        record = logging.LogRecord("app", logging.WARNING, __file__, 1, "from the handler %d", (7,), None)
        handler.handle(record)
        handler.close()
        assert handler.sent == 1 and (root / "app/python.log").read_text() == "WARNING from the handler 7\n"
        assert node.stop() == 0

    with refusing_port() as port:  # the stopped node's port may be anyone's by now: one surely refused
        down = _send(["-target", f"127.0.0.1:{port}", "-filename", "x", "-attempts", "2", "late"])
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "UNAVAILABLE" in down.stderr


def test_send_over_mutual_tls(tmp_path: Path, tls_files: TlsFiles) -> None:
    root = tmp_path / "logs"
    node_tls = ["-ca", str(tls_files.ca), "-crt", str(tls_files.node_crt), "-pk", str(tls_files.node_key)]
    with start_node(_streamer(root, *node_tls)) as node:
        client_tls = ["-ca", str(tls_files.ca), "-crt", str(tls_files.client_crt), "-pk", str(tls_files.client_key)]
        done = _send(["-target", f"localhost:{node.port}", "-filename", "secure", *client_tls], "one\ntwo\n")
        assert done.returncode == 0, done.stderr

        no_cert = _send(["-target", node.address, "-filename", "secure", "-ca", str(tls_files.ca), "-attempts", "1", "x"])
        assert no_cert.returncode == 1 and no_cert.stderr.count("\n") == 1
        assert "needs -crt and -pk" in no_cert.stderr  # the hint names what is missing
        other = ["-ca", str(tls_files.ca), "-crt", str(tls_files.other_crt), "-pk", str(tls_files.other_key)]
        wrong_ca = _send(["-target", node.address, "-filename", "secure", "-attempts", "1", *other, "x"])
        assert wrong_ca.returncode == 1

        with SyncLogClient(node.address, tls_files.ca, tls_files.client_crt, tls_files.client_key) as client:
            assert client.log_many("", "secure", ["three"]) == 1
        assert (root / "secure.log").read_text() == "one\ntwo\nthree\n"
        assert node.stop() == 0


def test_certificates_from_logstream_certs_work_server_only(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run([*logstream_command(), "certs", "--out", str(certs)], capture_output=True, text=True,
                          timeout=30)
    assert made.returncode == 0, made.stderr
    node_tls = ["-crt", str(certs / "node.crt"), "-pk", str(certs / "node.key")]
    with start_node(_streamer(tmp_path / "logs", *node_tls)) as node:
        done = _send(["-mediator", f"localhost:{node.port}", "-filename", "f", "-ca", str(certs / "ca.crt"), "hi"])
        assert done.returncode == 0, done.stderr
        plain = _send(["-target", node.address, "-filename", "f", "-attempts", "1", "plaintext"])
        assert plain.returncode == 1 and "the server speaks TLS: give -ca" in plain.stderr
        assert node.stop() == 0
    assert (tmp_path / "logs" / "f.log").read_text() == "hi\n"
