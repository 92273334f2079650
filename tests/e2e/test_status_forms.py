"""`logstream status` with real nodes: pointed at a streamer it says so (decided on the status code and
a probe of the streamer's own service); both `--json` forms print alike, and their output, a mediator
answering, unreachable or a cluster stopped, always has the one documented shape (node/status_schema.py,
checked with `jsonschema`); the `-mediator` form's object is one element of the FILE form's `mediators`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import run_logstream, start_node
from netports import refusing_port

from logstream.client import SyncLogClient
from logstream.node.status_schema import CLUSTER, MEDIATOR, SCHEMA_VERSION

pytestmark = pytest.mark.e2e


def test_status_at_a_streamer_says_it_is_a_streamer(tmp_path: Path) -> None:
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "logs")]) as node:
        done = run_logstream(["status", "-mediator", node.address])
        assert done.returncode == 1 and done.stderr.count("\n") == 1
        assert f"{node.address} is a streamer, not a mediator" in done.stderr
        assert node.stop() == 0


def _json(args: list[str], code: int, cwd: Path | None = None) -> dict[str, Any]:
    done = run_logstream(args, cwd=cwd)
    assert done.returncode == code, done.stderr
    assert done.stdout == json.dumps(json.loads(done.stdout), indent=2, sort_keys=True) + "\n"
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def _cluster_file(tmp_path: Path, mediator_port: int, streamer_port: int) -> Path:
    file = tmp_path / "c.toml"
    file.write_text(f'[cluster]\nname = "t"\nrun_dir = "{tmp_path / "run"}"\n[mediator]\nport = {mediator_port}\n'
                    f'[streamers]\ncount = 1\nport = {streamer_port}\npath = "{tmp_path / "logs"}"\n')
    return file


def _steady(mediator: dict[str, Any]) -> dict[str, Any]:
    """A mediator object without what changes between two asks (the time since the last ping)."""
    return {**mediator, "streamers": [{**s, "last_seen_s": None} for s in mediator["streamers"]]}


def test_both_json_forms_have_the_one_schema_with_a_live_mediator(tmp_path: Path) -> None:
    with start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "300ms"]) as mediator, \
            start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "logs"), "-id", "s1",
                        "-mediator", mediator.address]) as streamer:
        mediator.wait_for(r"is live \(1 live\)")
        with SyncLogClient(mediator.address) as client:
            client.log_many("app", "web", ["one", "two"])
        alone = _json(["status", "-mediator", mediator.address, "--json"], 0)
        jsonschema.validate(alone, MEDIATOR)
        assert alone["schema"] == SCHEMA_VERSION and alone["error"] is None and alone["name"] is None
        assert alone["addr"] == mediator.address and alone["mediator_id"]
        assert [(s["id"], s["addr"], s["alive"], s["files"], s["lines"]) for s in alone["streamers"]] == [
            ("s1", streamer.address, True, ["app/web"], 2)]
        # snake_case counters, by RPC too (once `requests_LogBatch`)
        assert alone["counters"]["requests_log_batch"] == 1 and alone["counters"]["lines"] == 2

        # The FILE form of a cluster whose supervisord is not running, but whose mediator answers.
        file = _cluster_file(tmp_path, mediator.port, streamer.port)
        view = _json(["status", str(file), "--json"], 1)
        jsonschema.validate(view, CLUSTER)
        assert view["schema"] == SCHEMA_VERSION and view["etcd"] is None
        assert view["supervisord"]["error"] and view["supervisord"]["processes"] == []
        (element,) = view["mediators"]
        assert _steady(element) == _steady({**alone, "name": "mediator"})
        assert mediator.stop() == 0 and streamer.stop() == 0


def test_both_json_forms_have_the_one_schema_when_nothing_answers(tmp_path: Path) -> None:
    with refusing_port() as port, refusing_port() as streamer_port:
        target = f"127.0.0.1:{port}"
        alone = _json(["status", "-mediator", target, "--json", "-timeout", "3"], 1)
        jsonschema.validate(alone, MEDIATOR)
        assert alone["error"] and (alone["mediator_id"], alone["streamers"], alone["counters"]) == (None, [], {})

        view = _json(["status", str(_cluster_file(tmp_path, port, streamer_port)), "--json"], 1)
        jsonschema.validate(view, CLUSTER)
        (element,) = view["mediators"]
        assert element == {**alone, "name": "mediator"}
        text = run_logstream(["status", str(_cluster_file(tmp_path, port, streamer_port))])
        assert text.returncode == 1 and f"mediator {target}: unreachable: " in text.stdout
        assert "supervisord: not running" in text.stdout


def test_the_schema_refuses_what_the_old_output_had() -> None:
    # The shapes before schema 1: a key that changed with state, and a mixed-case counter.
    old = {"schema": 1, "name": None, "addr": "h:1", "mediator_id": "x", "error": None, "streamers": [],
           "counters": {"requests_Log": 1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(old, MEDIATOR)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in old.items() if k != "error"} | {"counters": {}}, MEDIATOR)
    jsonschema.validate(old | {"counters": {"requests_log": 1}}, MEDIATOR)
