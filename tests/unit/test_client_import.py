"""`logstream.client` and `logstream.handler` are a light library: importing them pulls in grpc,
protobuf and the generated stubs, and nothing of the server extra (pydantic, supervisor,
cryptography, prometheus_client, uvloop, aetcd...) nor the package's server modules."""

from __future__ import annotations

import json
import subprocess
import sys

# Top-level modules that only `logstream[server]` installs.
SERVER_ONLY = ("pydantic", "pydantic_core", "pydantic_settings", "tomli_w", "supervisor", "cryptography",
               "prometheus_client", "uvloop", "aetcd")


def _imported_after(statement: str) -> list[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_importing_the_client_and_handler_leaves_out_the_server_dependencies() -> None:
    modules = _imported_after("import logstream.client, logstream.handler")
    assert "grpc" in modules and "logstream._proto.logstream_pb2" in modules  # the check sees imports
    assert sorted(m for m in modules if m.split(".")[0] in SERVER_ONLY) == []
    assert sorted(m for m in modules if m.startswith(("logstream.supervisor", "logstream.config",
                                                      "logstream.cluster", "logstream.streamer",
                                                      "logstream.mediator", "logstream.coord"))) == []


def test_the_check_would_see_a_server_dependency() -> None:
    # The same probe after importing a server module finds them: the assertion above can fail.
    modules = _imported_after("import logstream.client, logstream.config.settings, logstream.commands.certs")
    assert {"pydantic", "pydantic_settings", "cryptography"} <= {m.split(".")[0] for m in modules}


def test_the_client_commands_leave_out_the_server_dependencies() -> None:
    # `logstream send` and `logstream status -mediator` run in a client-only install (test_client_install.py
    # runs them there); this is the fast check of the same.
    modules = _imported_after("import logstream.commands.send, logstream.commands.status")
    assert "logstream.config.goflags" in modules
    assert sorted(m for m in modules if m.split(".")[0] in SERVER_ONLY) == []
    assert sorted(m for m in modules if m.startswith(("logstream.supervisor", "logstream.config.settings",
                                                      "logstream.cluster", "logstream.mediator"))) == []
