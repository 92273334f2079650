"""`pip install logstream` (no extra) in a fresh venv: only grpcio and protobuf come with it; the
client, the logging handler, `logstream send` and `logstream status -mediator` work against real nodes
from there; every server command (and `status FILE`) says in one line what to install and exits 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from helpers import start_node

from logstream.commands.main import COMMANDS, SERVER_MODULES
from logstream.node.status_schema import MEDIATOR

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 240  # measured ~20 s with pip's cache on the 2-core machine
# What `pip install logstream` may bring: the package, grpcio, protobuf and their own dependencies.
CLIENT_DISTRIBUTIONS = {"logstream", "grpcio", "protobuf", "typing_extensions", "pip", "setuptools"}
# Commands that work without the server extra (their flag parser is config/goflags.py, without pydantic).
CLIENT_COMMANDS = {"send", "status"}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `pip install SRC` (the client install), SRC a copy of what the sdist builds from."""
    folder = tmp_path_factory.mktemp("client-install")
    source = folder / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "logstream", source / "logstream", ignore=shutil.ignore_patterns("__pycache__"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           str(source)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def _python(venv: Path, code: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    # cwd outside the checkout: `logstream` must come from the venv, not the source folder.
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          timeout=timeout_s, cwd=venv)


def test_the_client_install_brings_only_grpc_and_protobuf(client_venv: Path) -> None:
    done = _python(client_venv, "import importlib.metadata as m, importlib.util as u, json; print(json.dumps(["
                   "sorted(d.metadata['Name'].lower().replace('-', '_') for d in m.distributions()), "
                   f"sorted(n for n in {sorted(SERVER_MODULES)!r} if u.find_spec(n) is not None)]))")
    assert done.returncode == 0, done.stderr
    distributions, server_modules = json.loads(done.stdout)
    assert {"logstream", "grpcio", "protobuf"} <= set(distributions) <= CLIENT_DISTRIBUTIONS
    assert server_modules == []


def test_the_client_and_handler_write_from_the_client_install(client_venv: Path, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    code = ("import logging, logstream, sys\n"
            "from logstream import SyncLogClient, LogstreamHandler\n"
            "with SyncLogClient(sys.argv[1]) as client:\n"
            "    client.log('app', 'direct', 'from the client install')\n"
            "handler = LogstreamHandler(sys.argv[1], path='app', filename='handled')\n"
            "logger = logging.getLogger('x'); logger.addHandler(handler); logger.warning('through the handler')\n"
            "assert handler.flush(10.0)\n"
            "handler.close()\n")
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", "s1"]) as node:
        done = subprocess.run([str(client_venv / "bin" / "python"), "-c", code, node.address], capture_output=True,
                              text=True, timeout=60, cwd=client_venv)
        assert done.returncode == 0, done.stderr
    assert (root / "app" / "direct.log").read_text() == "from the client install\n"
    assert (root / "app" / "handled.log").read_text() == "through the handler\n"


def test_send_and_status_mediator_work_from_the_client_install(client_venv: Path, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    logstream = str(client_venv / "bin" / "logstream")
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "300ms"]) as mediator, \
            start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", "s1",
                        "-mediator", mediator.address]) as streamer:
        mediator.wait_for(r"is live \(1 live\)")
        sent = subprocess.run([logstream, "send", "-target", mediator.address, "-path", "app", "-filename", "sent",
                               "one", "two"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        piped = subprocess.run([logstream, "send", "-target", mediator.address, "-path", "app", "-filename", "sent"],
                               input="three\n", capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert piped.returncode == 0, piped.stderr
        status = subprocess.run([logstream, "status", "-mediator", mediator.address, "--json"], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        view = json.loads(status.stdout)
        jsonschema.validate(view, MEDIATOR)
        assert [(s["id"], s["addr"], s["files"], s["lines"]) for s in view["streamers"]] == [
            ("s1", streamer.address, ["app/sent"], 3)]
        table = subprocess.run([logstream, "status", "-mediator", mediator.address], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
        assert table.returncode == 0 and f"mediator {mediator.address}" in table.stdout, table.stderr
    assert (root / "app" / "sent.log").read_text() == "one\ntwo\nthree\n"


def test_status_of_a_cluster_file_names_the_extra_to_install(client_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("[cluster]\nname = 'x'\n")
    done = subprocess.run([str(client_venv / "bin" / "logstream"), "status", "cluster.toml"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("logstream status: ") and done.stderr.rstrip().endswith("pip install 'logstream[server]'")


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - CLIENT_COMMANDS))
def test_a_server_command_names_the_extra_to_install(client_venv: Path, tmp_path: Path, command: str) -> None:
    args = {"run": [str(tmp_path / "cluster.toml")], "streamer": ["-port", "0"], "mediator": ["-port", "0"]}
    done = subprocess.run([str(client_venv / "bin" / "logstream"), command, *args.get(command, [])],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"logstream {command}: "), done.stderr
    assert lines[0].endswith("pip install 'logstream[server]'"), done.stderr


def test_version_works_without_the_server_extra(client_venv: Path) -> None:
    done = subprocess.run([str(client_venv / "bin" / "logstream"), "--version"], capture_output=True, text=True,
                          timeout=60, cwd=client_venv)
    assert (done.returncode, done.stdout) == (0, "logstream 0.1.0\n"), done.stderr
