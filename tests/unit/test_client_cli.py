"""`logstream send` in-process against a real in-memory LogStreamer: flags in Go and GNU style, stdin,
batching, and one-line errors with exit 2 for user mistakes and 1 for server or network failures."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from logstream.client import SendError
from logstream.commands import main as cli
from logstream.node import tls
from logstream.commands.send import describe, parse_target
from logstream.node.channel import Reach, probe
from logstream.config.flags import UsageError
from logstream.config.settings import StreamerSettings
from netports import refusing_port

if TYPE_CHECKING:
    from tests.conftest import MemoryLogServer, TlsFiles


class _Stdin:
    """A stdin with a real descriptor (send reads the descriptor, not `sys.stdin.buffer`)."""

    def __init__(self, data: bytes) -> None:
        self._file = tempfile.TemporaryFile()
        self._file.write(data)
        self._file.seek(0)

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def _send(args: list[str], capsys: pytest.CaptureFixture[str], stdin: bytes | None = None,
          monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str]:
    if stdin is not None:
        assert monkeypatch is not None
        fake = _Stdin(stdin)
        monkeypatch.setattr("sys.stdin", fake)
        try:
            code = cli.main(["send", *args])
        finally:
            fake.close()
    else:
        code = cli.main(["send", *args])
    err = capsys.readouterr().err
    return code, err


def test_lines_from_arguments(memory_server: MemoryLogServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _send(["-target", memory_server.target, "-path", "app", "-filename", "x", "one", "two"], capsys)
    assert (code, err) == (0, f"sent 2 lines to {memory_server.target}\n")
    assert memory_server.lines("app", "x") == ["one", "two"]


def test_lines_from_stdin_in_batches(memory_server: MemoryLogServer, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = "".join(f"line {n}\n" for n in range(5)).encode() + b"no newline at the end"
    code, err = _send([f"--target={memory_server.target}", "--filename", "y", "-batch-lines=2"], capsys,
                      stdin=data, monkeypatch=monkeypatch)
    assert (code, err) == (0, f"sent 6 lines to {memory_server.target}\n")
    assert memory_server.lines("", "y") == [f"line {n}" for n in range(5)] + ["no newline at the end"]
    assert memory_server.calls["LogBatch"] == 3


def test_empty_stdin_sends_nothing(memory_server: MemoryLogServer, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = _send(["-target", memory_server.target, "-filename", "z"], capsys, stdin=b"", monkeypatch=monkeypatch)
    assert (code, err) == (0, f"sent 0 lines to {memory_server.target}\n")
    assert memory_server.calls["LogBatch"] == 0


def test_invalid_argument_is_a_user_error_with_the_servers_message(
        memory_server: MemoryLogServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _send(["-target", memory_server.target, "-path", "a/../b", "-filename", "f", "x"], capsys)
    assert code == 2
    assert err == (f"logstream send: error: {memory_server.target}: INVALID_ARGUMENT: "
                   "path 'a/../b' has a '..' segment\n")
    assert memory_server.calls["LogBatch"] == 1  # never retried


def test_a_server_that_is_down_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with refusing_port() as port:
        target = f"127.0.0.1:{port}"
        code, err = _send(["-target", target, "-filename", "f", "-attempts", "2", "-timeout", "2s", "x"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"logstream send: error: {target}: UNAVAILABLE:") and "(after 2 attempts)" in err


@pytest.mark.parametrize("args, message", [
    (["-target", "nohost", "-filename", "f", "x"], "-target 'nohost': not a host:port address"),
    (["-target", "::1:80", "-filename", "f", "x"], "not a host:port address"),
    (["-target", "h:1", "-filename", "f", "-attempts", "2.5", "x"], "'2.5': not a whole number"),
    # argparse's own wording is not ours to match: the line names the flag at fault
    (["-target", "h:1"], "-filename"),
    (["-targ", "h:1", "-filename", "f"], "-target"),
    (["-target", "h:1", "-filename", "f", "-bogus", "x"], "-bogus"),
    (["-target", "h:1", "-filename", "f", "-batch-lines", "0"], "argument -batch-lines/--batch-lines: '0': must be at least 1"),
    (["-target", "h:1", "-filename", "f", "-batch-bytes", "-1B"], "'-1B': must be a finite size"),
    (["-target", "h:1", "-filename", "f", "-timeout", "soon"], "argument -timeout/--timeout: 'soon': not a duration"),
    (["-target", "h:1", "-filename", "f", "-crt", "x.crt", "a"], "-crt needs -pk too"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _send(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("logstream send: error: ")
    assert message in err


def test_parse_target() -> None:
    assert parse_target("127.0.0.1:8000") == "127.0.0.1:8000"
    assert parse_target("[::1]:8000") == "[::1]:8000"
    assert parse_target("logs.example.org:443") == "logs.example.org:443"
    for bad in ("host", "host:", ":80", "host:0", "host:65536", "host:8o", "::1:80"):
        with pytest.raises(UsageError):
            parse_target(bad)


def test_tls_modes(memory_server_factory: Callable[..., MemoryLogServer], tls_files: TlsFiles,
                   capsys: pytest.CaptureFixture[str]) -> None:
    server_only = memory_server_factory(tls.server_credentials(
        StreamerSettings.model_validate(dict(crt=tls_files.node_crt, pk=tls_files.node_key))))
    mutual = memory_server_factory(tls.server_credentials(
        StreamerSettings.model_validate(dict(ca=tls_files.ca, crt=tls_files.node_crt, pk=tls_files.node_key))))
    common = ["-filename", "f", "-attempts", "1"]

    assert _send(["-mediator", server_only.target, "-ca", str(tls_files.ca), *common, "s"], capsys)[0] == 0
    client = ["-crt", str(tls_files.client_crt), "-pk", str(tls_files.client_key)]
    assert _send(["-target", mutual.target, "-ca", str(tls_files.ca), *client, *common, "m"], capsys)[0] == 0
    assert server_only.lines("", "f") == ["s"] and mutual.lines("", "f") == ["m"]

    code, err = _send(["-target", mutual.target, "-ca", str(tls_files.ca), *common, "x"], capsys)
    assert code == 1 and err.count("\n") == 1 and "UNAVAILABLE" in err
    code, err = _send(["-target", server_only.target, "-ca", str(tls_files.other_ca), *common, "x"], capsys)
    assert code == 1 and "(TLS: check -ca, -crt and -pk" in err
    code, err = _send(["-target", server_only.target, *common, "plaintext"], capsys)
    assert code == 1
    code, err = _send(["-target", server_only.target, "-ca", str(tls_files.node_key), *common, "x"], capsys)
    assert code == 2 and "-ca " in err and "not a PEM certificate" in err
    assert server_only.lines("", "f") == ["s"] and mutual.lines("", "f") == ["m"]


def test_a_server_s_own_unavailable_is_retried_and_gets_no_tls_hint(
        memory_server: MemoryLogServer, capsys: pytest.CaptureFixture[str]) -> None:
    # The handshake works (the probe sees READY): the UNAVAILABLE is the server's, not TLS's.
    memory_server.fail(*[grpc.StatusCode.UNAVAILABLE] * 2)
    code, err = _send(["-target", memory_server.target, "-filename", "f", "-attempts", "2", "x"], capsys)
    assert code == 1 and "UNAVAILABLE" in err and "(after 2 attempts)" in err and "TLS" not in err


def test_describe_adds_the_tls_hint_only_for_a_failed_handshake() -> None:
    error = SendError("h:1", grpc.StatusCode.UNAVAILABLE, "any\nwording", attempts=1)
    assert describe(error, uses_tls=False, reach=Reach.HANDSHAKE_FAILS).endswith("(the server may require TLS: "
                                                                                 "give -ca, and -crt/-pk for mutual TLS)")
    assert "(TLS: check -ca" in describe(error, uses_tls=True, reach=Reach.HANDSHAKE_FAILS)
    for reach in (Reach.ANSWERS, Reach.NOT_LISTENING, Reach.UNDECIDED):
        assert describe(error, uses_tls=True, reach=reach) == "h:1: UNAVAILABLE: any wording"
    refused = SendError("h:1", grpc.StatusCode.INVALID_ARGUMENT, "bad", attempts=1, sent_lines=3)
    assert describe(refused, uses_tls=False, reach=Reach.HANDSHAKE_FAILS) == "h:1: INVALID_ARGUMENT: bad; 3 lines were sent before"


def test_probe_tells_nothing_listening_from_a_failed_handshake_from_an_answer(
        memory_server_factory: Callable[..., MemoryLogServer], tls_files: TlsFiles) -> None:
    server_only = memory_server_factory(tls.server_credentials(
        StreamerSettings.model_validate(dict(crt=tls_files.node_crt, pk=tls_files.node_key))))
    assert probe(server_only.target, None, 10) is Reach.HANDSHAKE_FAILS  # plaintext to a TLS server
    assert probe(server_only.target, tls.channel_credentials(tls_files.ca, None, None), 10) is Reach.ANSWERS
    with refusing_port() as port:
        assert probe(f"127.0.0.1:{port}", None, 10) is Reach.NOT_LISTENING
