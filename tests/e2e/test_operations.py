"""What an operator's tools see of real nodes: readiness that flips with the lease and membership
(HTTP /readyz and grpc health of api.LogStreamer) while liveness (/healthz, grpc health "") stays
up; /metrics on its own address (no profiling there) parsed with prometheus_client, a failed RPC
counted under its status code; JSON log lines."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Node, start_node
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

TIMINGS = ["-health-interval", "0.5s"]  # lease 0.75s, ping timeout 0.25s
METRICS_AT = re.compile(r"metrics server at (http://\S+)")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def http(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def metrics_url(node: Node) -> str:
    return node.wait_for(METRICS_AT).group(1)


def start_mediator(*extra: str, port: int = 0) -> Node:
    return start_node(["mediator", "-host", "127.0.0.1", "-port", str(port), "-metrics", "127.0.0.1:0",
                       *TIMINGS, *extra])


def start_streamer(root: Path, *extra: str) -> Node:
    return start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", "s1",
                       "-metrics", "127.0.0.1:0", *extra])


def grpc_health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)


def eventually(what: str, check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.05)


def ready(base: str) -> bool:
    return http("GET", base + "/readyz")[0] == 200


def test_a_streamer_is_ready_only_while_leased_and_stays_live(tmp_path: Path) -> None:
    with start_mediator() as mediator:
        with start_streamer(tmp_path / "logs", "-mediator", mediator.address) as streamer:
            base = metrics_url(streamer)
            eventually("leased: ready", lambda: ready(base))
            assert http("HEAD", base + "/readyz") == (200, "")
            assert grpc_health(streamer.address, "api.LogStreamer") == SERVING
            port = mediator.port
            mediator.stop(signal.SIGKILL)
            # No pings: the lease lapses within 0.75s; readiness follows within a tick.
            eventually("lease lapsed: not ready", lambda: not ready(base), timeout_s=5)
            status, body = http("GET", base + "/readyz")
            assert status == 503 and "lease" in body, body
            assert http("HEAD", base + "/readyz") == (503, "")
            assert grpc_health(streamer.address, "api.LogStreamer") == NOT_SERVING
            # Alive all the while: a process supervisor must not restart it for the mediator's absence.
            assert http("GET", base + "/healthz") == (200, "ok\n")
            assert http("HEAD", base + "/healthz") == (200, "")
            assert grpc_health(streamer.address, "") == SERVING
            assert grpc_health(streamer.address, "api.Pinger") == SERVING  # it must take the pings that lease it
            with start_mediator(port=port):
                eventually("leased by the restarted mediator: ready", lambda: ready(base), timeout_s=20)
                assert grpc_health(streamer.address, "api.LogStreamer") == SERVING
            assert streamer.stop() == 0


def test_a_mediator_is_ready_only_while_a_streamer_is_live(tmp_path: Path) -> None:
    with start_mediator() as mediator:
        base = metrics_url(mediator)
        status, body = http("GET", base + "/readyz")
        assert status == 503 and "no live streamer" in body, body
        assert http("GET", base + "/healthz") == (200, "ok\n")
        assert grpc_health(mediator.address, "api.LogStreamer") == NOT_SERVING
        assert grpc_health(mediator.address, "") == SERVING
        assert grpc_health(mediator.address, "api.Register") == SERVING  # streamers must be able to join
        with start_streamer(tmp_path / "logs", "-mediator", mediator.address) as streamer:
            eventually("a streamer is live: ready", lambda: ready(base))
            assert grpc_health(mediator.address, "api.LogStreamer") == SERVING
            streamer.stop(signal.SIGKILL)
        eventually("its only streamer died: not ready", lambda: not ready(base), timeout_s=10)
        assert grpc_health(mediator.address, "api.LogStreamer") == NOT_SERVING
        assert http("GET", base + "/healthz") == (200, "ok\n")
        assert mediator.stop() == 0


def scrape(base: str) -> dict[str, Metric]:
    status, body = http("GET", base + "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body)}


def sample(families: dict[str, Metric], family: str, name: str, **labels: str) -> float:
    values = [s.value for s in families[family].samples
              if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) <= 1, values
    return values[0] if values else 0.0


def test_metrics_of_a_running_cluster_parse_and_count_failures_by_code(tmp_path: Path) -> None:
    with start_mediator() as mediator:
        base = metrics_url(mediator)
        with start_streamer(tmp_path / "logs", "-mediator", mediator.address) as streamer:
            streamer_base = metrics_url(streamer)
            eventually("ready", lambda: ready(base))
            before = scrape(base)
            rpc = "api.LogStreamer/Log"
            counted = sample(before, "logstream_mediator_grpc_requests", "logstream_mediator_grpc_requests_total",
                             rpc=rpc, code="INVALID_ARGUMENT")
            with grpc.insecure_channel(mediator.address) as channel:
                log = pb_grpc.LogStreamerStub(channel).Log
                log(pb.LogRequest(path="app", filename="f", line="one"), timeout=10)
                with pytest.raises(grpc.RpcError) as caught:
                    log(pb.LogRequest(path="../escape", filename="f", line="x"), timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            after = scrape(base)
            assert sample(after, "logstream_mediator_grpc_requests", "logstream_mediator_grpc_requests_total",
                          rpc=rpc, code="INVALID_ARGUMENT") == counted + 1
            assert sample(after, "logstream_mediator_grpc_requests", "logstream_mediator_grpc_requests_total",
                          rpc=rpc, code="OK") >= 1
            assert after["logstream_mediator_grpc_requests"].type == "counter"
            for family in ("logstream_build_info", "logstream_mediator_streamer_up", "logstream_mediator_keys_owned",
                           "logstream_mediator_keys_waiting", "logstream_mediator_forward_seconds",
                           "logstream_mediator_ready", "logstream_mediator_live", "logstream_mediator_streamers_live"):
                assert family in after, family
            assert sample(after, "logstream_mediator_streamer_up", "logstream_mediator_streamer_up", streamer="s1") == 1
            # The forward of the good line was timed, labelled by the streamer it went to.
            assert sample(after, "logstream_mediator_forward_seconds", "logstream_mediator_forward_seconds_count",
                          streamer="s1", code="OK") >= 1
            assert sample(after, "logstream_mediator_keys_owned", "logstream_mediator_keys_owned") == 1
            assert sample(after, "logstream_mediator_ready", "logstream_mediator_ready") == 1
            info = after["logstream_build_info"].samples[0]
            assert info.labels["role"] == "mediator" and re.fullmatch(r"\d+\.\d+\.\d+.*", info.labels["version"])

            mine = scrape(streamer_base)
            assert mine["logstream_streamer_write_seconds"].type == "histogram"
            assert sample(mine, "logstream_streamer_write_seconds", "logstream_streamer_write_seconds_count") >= 1
            assert "logstream_streamer_fsync_seconds" in mine
            assert sample(mine, "logstream_streamer_root_free_bytes", "logstream_streamer_root_free_bytes") > 0
            assert sample(mine, "logstream_streamer_grpc_requests", "logstream_streamer_grpc_requests_total",
                          rpc="api.Pinger/Ping", code="OK") >= 1
            # Every metric the example alert rules use is exported (docs/alerts.yml).
            exported = {s.name for families in (after, mine) for family in families.values() for s in family.samples}
            rules = (Path(__file__).resolve().parents[2] / "docs" / "alerts.yml").read_text(encoding="utf-8")
            assert set(re.findall(r"\blogstream_\w+", rules)) <= exported
            # The metrics address serves no profiling and no stacks.
            for page in ("/debug/profile?seconds=1", "/debug/stacks"):
                assert http("GET", streamer_base + page)[0] == 404
            assert streamer.stop() == 0
        assert mediator.stop() == 0


def test_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    with start_node(["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(tmp_path / "logs"),
                     "-id", "s9", "-log-format", "json"]) as streamer:
        assert streamer.stop() == 0
    entries = [json.loads(line) for line in streamer.lines if line.strip()]
    assert entries, streamer.stderr
    for entry in entries:
        assert {"time", "level", "role", "node", "message"} <= set(entry), entry
        assert entry["role"] == "streamer" and entry["node"] == "s9"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]), entry
    assert any(entry["message"].startswith("listening on ") for entry in entries)
