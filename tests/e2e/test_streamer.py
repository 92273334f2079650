"""`logstream streamer` end to end: a real subprocess on 127.0.0.1, real gRPC clients, real files.

Covers what the Go original got wrong: lines lost under 1KB rotation, writes outside the root, `-size -1B`
and `-size 5`, writing stopped forever after one failed write; plus locks between two streamers,
SIGTERM under load, start-up errors, TLS modes, registration and the debug server.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from helpers import Node, run_logstream, start_node

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.e2e


def streamer(root: Path, *extra: str) -> list[str]:
    return ["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), *extra]


def stub(node: Node) -> pb_grpc.LogStreamerStub:
    return pb_grpc.LogStreamerStub(grpc.insecure_channel(node.address))


def files_in_order(folder: Path, stem: str) -> list[Path]:
    rotated = sorted(p for p in folder.iterdir() if p.name.startswith(stem + "_"))
    current = folder / f"{stem}.log"
    return rotated + ([current] if current.exists() else [])


def test_unary_and_batch_writes_land(tmp_path: Path) -> None:
    with start_node(streamer(tmp_path / "logs")) as node:
        client = stub(node)
        assert client.Log(pb.LogRequest(path="app", filename="web", line="one")).res == "Success"
        reply = client.LogBatch(pb.LogBatchRequest(chunks=[
            pb.LogChunk(path="app", filename="web", data=b"two\nthree\n"),
            pb.LogChunk(path="app/db", filename="sql", data=b"select"),
        ]))
        assert (reply.lines, reply.bytes) == (3, 17)
        assert pb_grpc.PingerStub(grpc.insecure_channel(node.address)).Ping(pb.PingRequest(a=2**30, b=4)).res == 0
        assert pb_grpc.PingerStub(grpc.insecure_channel(node.address)).Ping(
            pb.PingRequest(a=-(2**31), b=-1)).res == -(2**31)
        assert node.stop() == 0
    assert (tmp_path / "logs/app/web.log").read_bytes() == b"one\ntwo\nthree\n"
    assert (tmp_path / "logs/app/db/sql.log").read_bytes() == b"select\n"


def test_5000_lines_from_8_clients_with_1kb_rotation_arrive_exactly_once(tmp_path: Path) -> None:
    clients, per_client = 8, 625
    with start_node(streamer(tmp_path / "logs", "-size", "1KB")) as node:
        errors: list[BaseException] = []

        def send(client: int) -> None:
            try:
                with grpc.insecure_channel(node.address) as channel:
                    log = pb_grpc.LogStreamerStub(channel).Log
                    for seq in range(per_client):
                        log(pb.LogRequest(path="rot", filename="app", line=f"client {client} line {seq:04d}"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors[0]
        assert node.stop() == 0
    files = files_in_order(tmp_path / "logs/rot", "app")
    assert len(files) > 50  # 5000 lines of ~22 bytes: more than a hundred rotations
    for path in files:
        assert path.stat().st_size <= 1000, path
    seen: dict[int, list[int]] = defaultdict(list)
    for path in files:
        for line in path.read_text().splitlines():
            match = re.fullmatch(r"client (\d) line (\d{4})", line)
            assert match, line
            seen[int(match.group(1))].append(int(match.group(2)))
    assert {c: seen[c] for c in range(clients)} == {c: list(range(per_client)) for c in range(clients)}


BAD_INPUTS = [
    ("/etc", "passwd", "x", "absolute"),
    ("../outside", "f", "x", ".."),
    ("a/../../b", "f", "x", ".."),
    ("a", "", "x", "empty"),
    ("a", "x/y", "x", "'/'"),
    ("a\x00b", "f", "x", "NUL"),
    ("a", "f" * 300, "x", "bytes long"),
    ("link", "f", "x", "symlink 'link'"),
    ("a", "long", "z" * 2000, "longer than the maximum"),
    ("a", "..", "x", "only of dots"),
    ("a", ".", "x", "only of dots"),
]


def test_every_bad_input_is_invalid_argument_and_the_server_keeps_serving(tmp_path: Path) -> None:
    root, outside = tmp_path / "logs", tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    os.symlink(outside, root / "link")
    with start_node(streamer(root, "-max-line", "1KB")) as node:
        client = stub(node)
        for path, filename, line, needle in BAD_INPUTS:
            for call in (lambda: client.Log(pb.LogRequest(path=path, filename=filename, line=line)),
                         lambda: client.LogBatch(pb.LogBatchRequest(
                             chunks=[pb.LogChunk(path=path, filename=filename, data=line.encode())]))):
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, filename)
                assert needle in caught.value.details(), (needle, caught.value.details())
            assert client.Log(pb.LogRequest(path="good", filename="f", line="ok")).res == "Success"
        assert node.stop() == 0
    assert list(outside.iterdir()) == []
    assert (root / "good/f.log").read_text() == "ok\n" * len(BAD_INPUTS)
    assert sorted(p.name for p in root.iterdir()) == ["good", "link"]


@pytest.mark.parametrize(("size", "line", "count", "expected_files"), [("-1B", "x" * 50, 100, 1), ("5", "abcd", 4, 4)])
def test_size_minus_one_and_size_five(tmp_path: Path, size: str, line: str, count: int, expected_files: int) -> None:
    with start_node(streamer(tmp_path / "logs", "-size", size)) as node:
        client = stub(node)
        for _ in range(count):
            client.Log(pb.LogRequest(filename="f", line=line))
        assert node.stop() == 0
    files = files_in_order(tmp_path / "logs", "f")
    assert len(files) == expected_files
    assert "".join(p.read_text() for p in files) == (line + "\n") * count


def test_a_second_streamer_on_the_same_root_gets_aborted(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(streamer(root)) as first, start_node(streamer(root)) as second:
        stub(first).Log(pb.LogRequest(filename="shared", line="first"))
        with pytest.raises(grpc.RpcError) as caught:
            stub(second).Log(pb.LogRequest(filename="shared", line="second"))
        assert caught.value.code() == grpc.StatusCode.ABORTED
        stub(second).Log(pb.LogRequest(filename="other", line="second"))  # other files are fine
        assert first.stop() == 0  # the lock goes with the first streamer
        stub(second).Log(pb.LogRequest(filename="shared", line="second"))
        assert second.stop() == 0
    assert (root / "shared.log").read_text() == "first\nsecond\n"


def test_sigterm_under_load_leaves_whole_lines_and_exits_0(tmp_path: Path) -> None:
    node = start_node(streamer(tmp_path / "logs", "-size", "50KB"))
    stop = threading.Event()
    acked: dict[int, int] = defaultdict(int)
    line = "y" * 90

    def load(client: int) -> None:
        with grpc.insecure_channel(node.address) as channel:
            batch = pb_grpc.LogStreamerStub(channel).LogBatch
            data = "".join(f"{client} {line}\n" for _ in range(200)).encode()
            while not stop.is_set():
                try:
                    acked[client] += batch(pb.LogBatchRequest(chunks=[pb.LogChunk(filename=f"c{client}", data=data)]),
                                           timeout=10).lines
                except grpc.RpcError:
                    return

    threads = [threading.Thread(target=load, args=(c,)) for c in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    started = time.monotonic()
    code = node.stop(signal.SIGTERM)
    assert code == 0, node.stderr
    assert time.monotonic() - started < 10
    stop.set()
    for thread in threads:
        thread.join(15)
    for client in range(4):
        content = b"".join(p.read_bytes() for p in files_in_order(tmp_path / "logs", f"c{client}"))
        assert content.endswith(b"\n")
        lines = content.split(b"\n")[:-1]
        assert all(raw == f"{client} {line}".encode() for raw in lines)
        assert len(lines) >= acked[client]  # every acknowledged line is there
    assert sum(acked.values()) > 0


def test_a_failed_write_is_undone_and_the_next_request_works(tmp_path: Path) -> None:
    """A file-size limit makes writes fail with EFBIG (as a full disk would): the streamer answers
    RESOURCE_EXHAUSTED, leaves no partial line, and keeps writing other requests."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    with start_node(streamer(tmp_path / "logs"), preexec_fn=limit_file_size) as node:
        client = stub(node)
        client.LogBatch(pb.LogBatchRequest(chunks=[pb.LogChunk(filename="big", data=b"a" * 99 + b"\n")] * 30))
        with pytest.raises(grpc.RpcError) as caught:
            client.LogBatch(pb.LogBatchRequest(chunks=[pb.LogChunk(filename="big", data=b"b" * 1999 + b"\n")]))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        client.Log(pb.LogRequest(filename="small", line="after"))
        client.Log(pb.LogRequest(filename="big", line="fits"))
        assert node.stop() == 0
    assert (tmp_path / "logs/big.log").read_bytes() == b"a" * 99 + b"\n" + (b"a" * 99 + b"\n") * 29 + b"fits\n"
    assert (tmp_path / "logs/small.log").read_bytes() == b"after\n"


def test_start_up_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    bad_pem = tmp_path / "bad.pem"
    bad_pem.write_text("not a certificate")
    cases = [
        (["-path", str(tmp_path / "file")], "not a folder"),
        (["-port", str(busy.getsockname()[1])], "cannot listen"),
        (["-port", "0", "-pprof", "-pport", str(busy.getsockname()[1])], "-pport"),
        (["-crt", str(bad_pem), "-pk", str(bad_pem)], "not a PEM"),
        (["-crt", str(bad_pem)], "-pk"),
        (["-size", "5XB"], "-size"),
        (["-bogus"], "-bogus"),  # names the flag (the rest is argparse's wording)
    ]
    try:
        for args, needle in cases:
            done = run_logstream(["streamer", "-host", "127.0.0.1", "-path", str(tmp_path / "logs"), *args])
            assert done.returncode == 2, (args, done.stderr)
            errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
            assert len(errors) == 1 and needle in errors[0], (args, done.stderr)
            assert "Traceback" not in done.stderr
    finally:
        busy.close()


def test_help_lists_the_original_flags() -> None:
    done = run_logstream(["streamer", "--help"])
    assert done.returncode == 0
    for flag in ("-ca", "-console", "-crt", "-mediator", "-path", "-pk", "-port", "-pport", "-pprof", "-size"):
        assert flag in done.stdout


def test_console_echoes_lines(tmp_path: Path) -> None:
    with start_node(streamer(tmp_path / "logs", "-console")) as node:
        stub(node).Log(pb.LogRequest(filename="f", line="to the console"))
        assert node.stop() == 0
    assert b"to the console\n" in b"".join(node.out)


def test_debug_server_serves_metrics(tmp_path: Path) -> None:
    with start_node(streamer(tmp_path / "logs", "-pprof", "-pport", "0")) as node:
        stub(node).Log(pb.LogRequest(filename="f", line="x"))
        url = node.wait_for(r"debug server listening on (http://\S+)").group(1)
        body = urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10).read().decode()
        assert re.search(r"logstream_streamer_lines_total\{[^}]*\} 1\.0", body), body[:2000]
        assert node.stop() == 0


# -- TLS ------------------------------------------------------------------------------------------------


def _tls_call(node: Node, creds: grpc.ChannelCredentials | None) -> None:
    target = f"localhost:{node.port}"
    channel = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with channel:
        pb_grpc.LogStreamerStub(channel).Log(pb.LogRequest(filename="tls", line="x"), timeout=5)


def test_tls_server_only(tmp_path: Path, tls_files: TlsFiles) -> None:
    t = tls_files
    with start_node(streamer(tmp_path / "logs", "-crt", str(t.node_crt), "-pk", str(t.node_key))) as node:
        _tls_call(node, grpc.ssl_channel_credentials(t.ca.read_bytes()))
        for creds in (None, grpc.ssl_channel_credentials(t.other_ca.read_bytes())):
            with pytest.raises(grpc.RpcError) as caught:
                _tls_call(node, creds)  # plaintext, or a client that does not trust the server
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert node.stop() == 0
    assert (tmp_path / "logs/tls.log").read_text() == "x\n"


def test_tls_mutual_refuses_clients_without_a_certificate(tmp_path: Path, tls_files: TlsFiles) -> None:
    t = tls_files
    args = streamer(tmp_path / "logs", "-crt", str(t.node_crt), "-pk", str(t.node_key), "-ca", str(t.ca))
    with start_node(args) as node:
        _tls_call(node, grpc.ssl_channel_credentials(t.ca.read_bytes(), t.client_key.read_bytes(),
                                                     t.client_crt.read_bytes()))
        refused = [
            grpc.ssl_channel_credentials(t.ca.read_bytes()),  # no client certificate
            grpc.ssl_channel_credentials(t.ca.read_bytes(), t.other_key.read_bytes(), t.other_crt.read_bytes()),
            grpc.ssl_channel_credentials(t.other_ca.read_bytes(), t.client_key.read_bytes(),
                                         t.client_crt.read_bytes()),  # does not trust the server
        ]
        for creds in refused:
            with pytest.raises(grpc.RpcError) as caught:
                _tls_call(node, creds)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert node.stop() == 0
    assert (tmp_path / "logs/tls.log").read_text() == "x\n"


def test_a_cap_over_the_open_files_limit_is_a_start_up_error(tmp_path: Path) -> None:
    """The soft limit is raised to the hard one first; a cap that still cannot fit is one line naming
    both numbers, exit 2."""

    def limit_1024() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    node = start_node(streamer(tmp_path / "logs", "-max-open-files", "2000"), wait=False, preexec_fn=limit_1024)
    assert node.proc.wait(20) == 2
    node.stop()
    errors = [line for line in node.lines if "error" in line.lower()]
    assert len(errors) == 1 and "-max-open-files 2000" in errors[0] and "1024" in errors[0], node.stderr
    with start_node(streamer(tmp_path / "logs", "-max-open-files", "900"), preexec_fn=limit_1024) as fits:
        assert fits.stop() == 0
