"""Bad input: over 10,000 generated requests (seeded: names with `..`, `.`, NUL, `/`, unicode,
over-long, empty, rotated-looking; lines over the limit; symlinks planted inside the root) straight
to a standalone streamer and through a mediator, with Log, LogBatch and LogStream, plus raw garbage
on both ports (plain TCP, and undecodable bodies inside valid gRPC frames). 0 crashes, 0 calls
hanging past 5 s, 0 files written outside the roots, every bad name refused with INVALID_ARGUMENT,
every good one written, and both still serving afterwards."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from faultnodes import channel, mediator, procs, streamer, wait_live, wait_placing
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc

pytestmark = pytest.mark.faults

SEED = 20261130
REQUESTS_PER_TARGET = 5200
MAX_LINE = 4096  # -max-line on every node, so that an over-long line is cheap to send
HANG_S = 5.0
CONCURRENCY = 48


@dataclass(frozen=True)
class Request:
    path: str
    filename: str
    line: bytes
    bad: str  # why it must be refused; "" for a good request
    method: str  # Log, LogBatch or LogStream


def bad_name(rng: random.Random, stamp: int) -> tuple[str, str, str]:
    """(path, filename, why) for one generated bad name; `stamp` keeps names apart."""
    word = f"w{stamp}"
    kind = rng.randrange(17)
    if kind == 0:
        return word, "", "empty filename"
    if kind == 1:
        return word, "." * rng.randint(1, 4), "filename of dots only"
    if kind == 2:
        return word, f"{word}/{rng.choice(['x', '..', ''])}", "'/' in filename"
    if kind == 3:
        return word, f"{word}\0{rng.choice(['', 'x', '.log'])}", "NUL in filename"
    if kind == 4:
        return f"{word}\0", "f", "NUL in path"
    if kind == 5:
        return rng.choice(["..", "../x", f"{word}/..", f"{word}/../..", f"a/../{word}", "./../x"]), "f", "'..' in path"
    if kind == 6:
        return "/" + rng.choice(["tmp", "etc", word]), "f", "absolute path"
    if kind == 7:
        return word, rng.choice(["é", "x", "日"]) * rng.randint(260, 400), "over-long filename"
    if kind == 8:
        return "d" * rng.randint(256, 600) + "/x", "f", "over-long path segment"
    if kind == 9:
        return "/".join(["p" * 200] * rng.randint(21, 30)), "f", "path over PATH_MAX"
    if kind == 10:
        return rng.choice(["loop", "loop/x", f"loop/loop/{word}"]), "f", "path through a symlink to the root"
    if kind == 11:
        return rng.choice(["out", "out/x", f"out/{word}"]), "f", "path through a symlink out of the root"
    if kind == 12:
        return "", "escape", "filename that is a symlink out of the root"
    if kind == 13:
        return rng.choice(["inner/x", "inner"]), "f", "path through a symlink to a folder in the root"
    if kind == 14:
        return word, f"{word}_20260101T000000.{rng.randint(0, 999999):06d}Z", "rotated-looking filename"
    if kind == 15:
        return word, "..", "filename '..'"
    return word, ".", "filename '.'"


def good_name(rng: random.Random, stamp: int) -> tuple[str, str]:
    path = rng.choice(["", "a", "a/b", "ünï/cødé", "日本/語", "a//b", "./a"])
    filename = rng.choice(["f", "naïve", "日誌", "🙂", "a.b", "x-y_z", ".hidden", "a..b"])
    return path, f"{filename}{stamp % 7}"


def generate(rng: random.Random, count: int, target: str) -> list[Request]:
    requests = []
    for n in range(count):
        method = rng.choice(["Log", "LogBatch", "LogStream"])
        roll = rng.random()
        if roll < 0.7:
            path, filename, why = bad_name(rng, n)
            requests.append(Request(path, filename, f"{target} {n}".encode(), why, method))
        elif roll < 0.78:
            path, filename = good_name(rng, n)
            requests.append(Request(path, filename, b"L" * rng.randint(MAX_LINE + 1, 4 * MAX_LINE), "line over -max-line", method))
        elif roll < 0.8 and method != "Log":
            # Item 9: a chunk without data still names a target, and it is checked.
            requests.append(Request("out", "x", b"", "empty chunk through a symlink out of the root", method))
        else:
            path, filename = good_name(rng, n)
            requests.append(Request(path, filename, f"{target} good {n}".encode(), "", method))
    return requests


async def call(chan: grpc.aio.Channel, request: Request) -> str:
    stub = pb_grpc.LogStreamerStub(chan)  # type: ignore[no-untyped-call]
    chunk = pb.LogChunk(path=request.path, filename=request.filename, data=request.line)
    try:
        if request.method == "Log":
            await stub.Log(pb.LogRequest(path=request.path, filename=request.filename,
                                         line=request.line.decode()), timeout=HANG_S)
        elif request.method == "LogBatch":
            await stub.LogBatch(pb.LogBatchRequest(chunks=[chunk]), timeout=HANG_S)
        else:
            stream = stub.LogStream(timeout=HANG_S)
            try:
                await stream.write(pb.LogBatchRequest(chunks=[chunk]))
                await stream.done_writing()
            except asyncio.InvalidStateError:
                pass  # the server ended the call before our message went out: its status says why
            reply = await stream.read()
            code = await stream.code()
            if code != grpc.StatusCode.OK:
                return str(code.name)
            if reply is grpc.aio.EOF:
                return "NO_REPLY"
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return "OK"


async def fire(target: str, requests: list[Request]) -> list[str]:
    gate = asyncio.Semaphore(CONCURRENCY)
    async with channel(target) as chan:
        async def one(request: Request) -> str:
            async with gate:
                return await call(chan, request)

        return list(await asyncio.gather(*(one(r) for r in requests)))


def plant_symlinks(root: Path, outside: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "real").mkdir(exist_ok=True)
    os.symlink(".", root / "loop")
    os.symlink(str(outside), root / "out")
    os.symlink("real", root / "inner")
    os.symlink(str(outside / "escape.log"), root / "escape.log")


def snapshot(folder: Path, roots: list[Path]) -> dict[str, tuple[int, int]]:
    """Every file under `folder` outside `roots`: (size, mtime_ns)."""
    found = {}
    for dirpath, dirnames, files in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in roots]
        for name in files:
            st = os.lstat(here / name)
            found[str(here / name)] = (st.st_size, st.st_mtime_ns)
    return found


async def garbage(target: str, rng: random.Random) -> list[str]:
    """Raw bytes on the port (some after a valid HTTP/2 preface), then undecodable bodies in gRPC
    frames; the codes the framed ones got."""
    host, _, port = target.rpartition(":")
    for n in range(60):
        prefix = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if n % 2 else b""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), HANG_S)
            writer.write(prefix + rng.randbytes(rng.randint(1, 4096)))
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(65536), 0.05)
            except asyncio.TimeoutError:
                pass
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    codes = []
    async with channel(target) as chan:
        for n in range(200):
            method = ["/api.LogStreamer/Log", "/api.LogStreamer/LogBatch"][n % 2]
            body = rng.randbytes(rng.randint(1, 512))
            rpc = chan.unary_unary(method, request_serializer=lambda _: body, response_deserializer=lambda b: b)
            try:
                await rpc(b"", timeout=HANG_S)
                codes.append("OK")
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code().name)
    return codes


def test_bad_input_straight_and_through_the_mediator(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "escape.log").write_text("not yours\n")
    alone_root, cluster_root = tmp_path / "alone", tmp_path / "clustered"
    for root in (alone_root, cluster_root):
        plant_symlinks(root, outside)
    state = tmp_path / "mediator-state"  # the mediator's own file, written as it runs: not checked
    state.mkdir()
    before = snapshot(tmp_path, [alone_root, cluster_root, state])
    rng = random.Random(SEED)
    limit = ["-max-line", str(MAX_LINE)]
    with procs() as started:
        alone = streamer(started, "alone", alone_root, None, *limit)
        # The default health interval: this scenario is about input, not fail-over, and a busy
        # machine answering a 150ms ping late would fail the streamer over.
        med = mediator(started, *limit, "-lease-file", str(state / "mediator.lease"), interval="5s")
        clustered = streamer(started, "c0", cluster_root, med.address, *limit)
        wait_live(med.address, ["c0"])
        wait_placing(med.address)  # a fresh -lease-file: no start-up grace; this checks it
        results: dict[str, tuple[list[Request], list[str], list[str]]] = {}
        for name, node in (("streamer", alone), ("mediator", med)):
            requests = generate(rng, REQUESTS_PER_TARGET, name)
            codes = asyncio.run(fire(node.address, requests))
            framed = asyncio.run(garbage(node.address, rng))
            results[name] = (requests, codes, framed)
        # Both still serving: a good write through each, and every process alive.
        after_codes = {name: asyncio.run(fire(node.address, [Request("after", "check", b"still here", "", "Log")]))
                       for name, node in (("streamer", alone), ("mediator", med))}
        crashed = [n.args[0] for n in (alone, med, clustered) if n.proc.poll() is not None]
        notes = [f"{n.args[0]}: {line}" for n in (alone, med, clustered) for line in n.lines
                 if " WARNING " in line or " ERROR " in line]
    total = sum(len(r[0]) for r in results.values())
    assert total >= 10_000
    assert not crashed, f"crashed: {crashed}"
    assert after_codes == {"streamer": ["OK"], "mediator": ["OK"]}, after_codes
    problems = []
    for name, (requests, codes, framed) in results.items():
        hung = sum(code == "DEADLINE_EXCEEDED" for code in codes + framed)
        if hung:
            by_method = Counter(r.method for r, code in zip(requests, codes) if code == "DEADLINE_EXCEEDED")
            problems.append(f"{name}: {hung} calls hung past {HANG_S}s (by method: {dict(by_method)})")
        wrong = Counter((r.bad or "good", code) for r, code in zip(requests, codes)
                        if code != ("INVALID_ARGUMENT" if r.bad else "OK"))
        if wrong:
            problems.append(f"{name}: {sum(wrong.values())} requests answered wrongly "
                            f"(why, code): {sorted(wrong.items())}")
        framed_wrong = Counter(code for code in framed if code not in ("INVALID_ARGUMENT", "OK"))
        if framed_wrong:
            problems.append(f"{name}: undecodable bodies answered {dict(framed_wrong)} (want INVALID_ARGUMENT)")
    changed = {path: (before.get(path), now) for path, now in snapshot(tmp_path, [alone_root, cluster_root, state]).items()
               if before.get(path) != now}
    if changed:
        problems.append(f"files written outside the roots: {list(changed)[:5]}")
    good = {(r.line.decode()) for name in results for r, code in zip(*results[name][:2])
            if not r.bad and code == "OK"}
    written = set()
    for root in (alone_root, cluster_root):
        for dirpath, _dirs, files in os.walk(root):  # does not follow the planted symlinks
            for name in files:
                if name.endswith(".log"):
                    written |= set((Path(dirpath) / name).read_text(errors="replace").splitlines())
    if good - written:
        problems.append(f"{len(good - written)} acknowledged good lines not in a root")
    # One of each kind of warning or error the nodes logged (kinds told apart by their first words).
    kinds = {" ".join(line.split()[5:12]): line[:300] for line in notes}
    assert not problems, "\n".join(problems) + "\nthe nodes logged (one of each kind):\n" + "\n".join(kinds.values())


def test_garbage_on_a_plain_socket_leaves_the_port_serving(tmp_path: Path) -> None:
    """A quick check of the raw-bytes part alone, straight to a streamer: a half-open connection
    that never speaks HTTP/2 holds nothing up."""
    with procs() as started:
        alone = streamer(started, "alone", tmp_path / "r", None)
        idle = socket.create_connection(("127.0.0.1", alone.port))
        try:
            idle.sendall(b"\x16\x03\x01")  # a TLS hello's first bytes to a plaintext port, then silence
            codes = asyncio.run(fire(alone.address, [Request("p", "f", b"x", "", "Log")] * 20))
        finally:
            idle.close()
        assert codes == ["OK"] * 20 and alone.proc.poll() is None
