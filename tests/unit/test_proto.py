"""The committed stubs match proto/logstream.proto, and the Go-compatible names and numbers hold."""

from pathlib import Path

from logstream._proto import logstream_pb2 as pb
from logstream._proto.gen import generate

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_the_proto() -> None:
    for name, text in generate(ROOT / "proto").items():
        committed = (ROOT / "logstream" / "_proto" / name).read_text()
        assert committed == text, f"logstream/_proto/{name} is stale: run python scripts/gen_proto.py"


def _fields(message: type) -> dict[str, tuple[int, int]]:
    return {f.name: (f.number, f.type) for f in message.DESCRIPTOR.fields}


def test_wire_contract_of_the_go_original() -> None:
    from google.protobuf.descriptor import FieldDescriptor as F

    assert pb.DESCRIPTOR.package == "api"
    assert _fields(pb.LogRequest) == {"filename": (1, F.TYPE_STRING), "path": (2, F.TYPE_STRING), "line": (3, F.TYPE_STRING)}
    assert _fields(pb.LogResponse) == {"res": (1, F.TYPE_STRING)}
    assert {k: v for k, v in _fields(pb.PingRequest).items() if v[0] <= 3} == {
        "a": (1, F.TYPE_INT32), "b": (2, F.TYPE_INT32), "streamerId": (3, F.TYPE_STRING)}
    assert _fields(pb.PingResponse)["res"] == (2, F.TYPE_INT32)
    assert 1 not in {number for number, _ in _fields(pb.PingResponse).values()}
    assert _fields(pb.RegisterRequest) == {"id": (1, F.TYPE_STRING), "addr": (2, F.TYPE_STRING)}
    assert _fields(pb.RegisterResponse) == {"res": (1, F.TYPE_STRING)}
    services = {s.name: {m.name: (m.input_type.name, m.output_type.name) for m in s.methods}
                for s in pb.DESCRIPTOR.services_by_name.values()}
    assert services["LogStreamer"]["Log"] == ("LogRequest", "LogResponse")
    assert services["Pinger"]["Ping"] == ("PingRequest", "PingResponse")
    assert services["Register"]["Register"] == ("RegisterRequest", "RegisterResponse")
