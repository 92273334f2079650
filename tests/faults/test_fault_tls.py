"""Mutual TLS (issue 7, items 2, 3 and 8): a streamer with a certificate from another CA cannot
register; a plaintext or other-CA client cannot write; a client certificate (signed by the
cluster's CA, but not a node's) cannot forward to a streamer, register, send a lease-granting ping,
or release keys, and the cluster goes on unharmed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from faultnodes import channel, mediator, procs, status, streamer, wait_live, wait_placing
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import MEDIATOR_HEADER
from logstream.node.tls import channel_credentials

if TYPE_CHECKING:
    from tests.conftest import TlsFiles

pytestmark = pytest.mark.faults

REFUSED = {"PERMISSION_DENIED", "UNAUTHENTICATED", "FAILED_PRECONDITION"}


async def code_of(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return "OK"


def lines_in(root: Path) -> set[str]:
    return {line for p in root.rglob("*.log") for line in p.read_text().splitlines()}


def test_mutual_tls_lets_only_nodes_steer_and_only_the_ca_in(tmp_path: Path, tls_files: TlsFiles) -> None:
    node_tls = ["-ca", str(tls_files.ca), "-crt", str(tls_files.node_crt), "-pk", str(tls_files.node_key)]
    client = channel_credentials(tls_files.ca, tls_files.client_crt, tls_files.client_key)
    other_ca_client = channel_credentials(tls_files.ca, tls_files.other_crt, tls_files.other_key)
    root = tmp_path / "s0"
    with procs() as started:
        med = mediator(started, *node_tls, "-lease-file", str(tmp_path / "mediator.lease"), interval="5s")  # no fail-over wanted here (see test_fault_badinput)
        node = streamer(started, "s0", root, med.address, *node_tls)
        wait_live(med.address, ["s0"], creds=client)
        wait_placing(med.address, creds=client)  # a fresh -lease-file: no start-up grace
        # A streamer whose certificate comes from another CA: its registration never gets through.
        intruder = streamer(started, "intruder", tmp_path / "intruder", med.address,
                            "-ca", str(tls_files.other_ca), "-crt", str(tls_files.other_crt),
                            "-pk", str(tls_files.other_key))
        before = status(med.address, client)
        assert before is not None
        mediator_id = before["mediator_id"]
        s0_addr = next(s["addr"] for s in before["streamers"] if s["id"] == "s0")

        async def attempts() -> dict[str, str]:
            codes: dict[str, str] = {}
            async with channel(med.address) as plain:
                codes["plaintext client writes"] = await code_of(pb_grpc.LogStreamerStub(plain).Log(  # type: ignore[no-untyped-call]
                    pb.LogRequest(path="t", filename="plain", line="x"), timeout=5))
            async with channel(med.address, other_ca_client) as other:
                codes["other-CA client writes"] = await code_of(pb_grpc.LogStreamerStub(other).Log(  # type: ignore[no-untyped-call]
                    pb.LogRequest(path="t", filename="other", line="x"), timeout=5))
                codes["other-CA register"] = await code_of(pb_grpc.RegisterStub(other).Register(  # type: ignore[no-untyped-call]
                    pb.RegisterRequest(id="rogue", addr="127.0.0.1:1"), timeout=5))
            async with channel(node.address, client) as direct:
                # Posing as the mediator: its incarnation id, as a forward carries it.
                codes["client cert forwards to a streamer"] = await code_of(pb_grpc.LogStreamerStub(direct).Log(  # type: ignore[no-untyped-call]
                    pb.LogRequest(path="t", filename="forged", line="forged forward"), timeout=5,
                    metadata=((MEDIATOR_HEADER, mediator_id),)))
                codes["client cert lease-granting ping"] = await code_of(pb_grpc.PingerStub(direct).Ping(  # type: ignore[no-untyped-call]
                    pb.PingRequest(a=3, b=4, streamerId="s0", lease_ms=3_600_000, mediator_id="forged",
                                   interval_ms=1000, seq=1, acked_seq=0), timeout=5))
                codes["client cert releases keys"] = await code_of(pb_grpc.StreamerControlStub(direct).Release(  # type: ignore[no-untyped-call]
                    pb.ReleaseRequest(keys=[pb.FileKey(path="t", filename="k")], mediator_id=mediator_id), timeout=5))
            async with channel(med.address, client) as via:
                codes["client cert registers"] = await code_of(pb_grpc.RegisterStub(via).Register(  # type: ignore[no-untyped-call]
                    pb.RegisterRequest(id="s0", addr="127.0.0.1:1"), timeout=5))
                # The cluster is unharmed: a write through the mediator still lands on s0.
                codes["client writes through the mediator"] = await code_of(pb_grpc.LogStreamerStub(via).Log(  # type: ignore[no-untyped-call]
                    pb.LogRequest(path="t", filename="k", line="through the mediator"), timeout=10))
            return codes

        codes = asyncio.run(attempts())
        after = status(med.address, client)
        assert intruder.proc.poll() is None  # it keeps trying; it must just never get in
    through = codes.pop("client writes through the mediator")
    assert codes.pop("plaintext client writes") == "UNAVAILABLE"  # no TLS session at all
    assert codes.pop("other-CA client writes") == "UNAVAILABLE"  # the handshake fails
    assert codes.pop("other-CA register") == "UNAVAILABLE"
    problems = [f"accepted from a client certificate (want one of {sorted(REFUSED)}): "
                f"{ {what: code for what, code in codes.items() if code not in REFUSED} }"] \
        if any(code not in REFUSED for code in codes.values()) else []
    assert after is not None
    ids = {s["id"]: (s["addr"], s["alive"]) for s in after["streamers"]}
    if "intruder" in ids or "rogue" in ids or ids.get("s0") != (s0_addr, True):
        problems.append(f"membership changed: {ids} (s0 was {s0_addr})")
    if "forged forward" in lines_in(root):
        problems.append("the forged forward was written")
    if through != "OK" or "through the mediator" not in lines_in(root):
        problems.append(f"a write through the mediator afterwards got {through}")
    assert not problems, "\n".join(problems)
