"""Generates the Python stubs of proto/logstream.proto (used by scripts/gen_proto.py and the tests)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

PROTO_NAME = "logstream.proto"
GENERATED = ("logstream_pb2.py", "logstream_pb2.pyi", "logstream_pb2_grpc.py")


def generate(proto_dir: Path) -> dict[str, str]:
    """Return {file name: text} of the stubs protoc makes from `proto_dir/logstream.proto`."""
    from grpc_tools import protoc  # a test/dev dependency, imported only here
    import importlib.resources

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(
            [
                "protoc",
                f"-I{proto_dir}",
                f"-I{include}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(proto_dir / PROTO_NAME),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code}")
        texts = {name: (Path(out) / name).read_text() for name in GENERATED}
    # protoc writes a top-level import; the stubs live in a package.
    texts["logstream_pb2_grpc.py"] = re.sub(
        r"^import logstream_pb2 as", "from . import logstream_pb2 as",
        texts["logstream_pb2_grpc.py"], flags=re.M,
    )
    return texts
