"""`logstream run`'s manager: render supervisord.conf, run supervisord as a child, follow the nodes'
output, announce readiness once, and on SIGINT/SIGTERM/SIGHUP stop everything, leaving no process
(and if `run` is killed outright, supervisord gets its parent-death signal and stops the nodes).

Like honcho's Manager, one loop owns all state: the signal handlers only record the signal, and
the loop (poll files, poll supervisord, check readiness) does the work.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from logstream.cluster import ClusterConfig, Node, etcd_endpoints, mediator_address, mediator_addresses
from logstream.errors import UserError
from logstream.node.health import WRITE_SERVICE
from logstream.supervisor.control import socket_answers, supervisor_rpc
from logstream.supervisor.printer import Printer
from logstream.supervisor.process import Follower, alive, clean_environment, die_with_parent, is_our_node
from logstream.supervisor.render import RunPaths, process_name, render, stop_wait_s

# Seconds between readiness checks, and after which a missing node is reported once.
READY_POLL_S = 0.25
READY_WARN_S = 30.0
LOOP_S = 0.1
# Beyond the nodes' stopwaitsecs, how long supervisord gets to finish before everything is killed.
KILL_MARGIN_S = 3.0
# A closed terminal (SIGHUP) ends a run as Ctrl-C and SIGTERM do.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SPAWNED_RE = re.compile(r"spawned: '([^']+)' with pid (\d+)")
_FATAL_RE = re.compile(r"gave up: (\S+) entered FATAL state")
# supervisord lines that alarm without informing: the socket is chmod 0700 in the run directory.
_QUIET = ("running without any HTTP authentication checking", "Supervisor is running as root")


class RenderError(UserError):
    """The cluster cannot be written as supervisord.conf (e.g. a line break in a path)."""


@dataclass
class ReadyCheck:
    """Asks the mediator's ClusterStatus.Status whether every expected streamer is registered and alive."""

    target: str
    expected: list[str]
    tls: tuple[Path | None, Path | None, Path | None] | None
    _channel: object | None = field(default=None, repr=False)
    missing: list[str] = field(default_factory=list)

    def __call__(self) -> bool:
        import grpc

        from logstream._proto import logstream_pb2, logstream_pb2_grpc

        if self._channel is None:
            from logstream.node.channel import sync_channel, with_options
            from logstream.node.net import CHANNEL_OPTIONS
            from logstream.node.tls import channel_credentials

            # The mediator may not listen yet: retry connecting quickly rather than with grpc's
            # default backoff (1s, growing), which would delay the ready line by seconds.
            options = with_options(CHANNEL_OPTIONS, initial_reconnect_backoff_ms=100, min_reconnect_backoff_ms=100,
                                   max_reconnect_backoff_ms=250)
            self._channel = sync_channel(self.target, None if self.tls is None else channel_credentials(*self.tls),
                                         options)
        stub = logstream_pb2_grpc.ClusterStatusStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            reply = stub.Status(logstream_pb2.StatusRequest(), timeout=1.0)
        except grpc.RpcError:
            self.missing = ["mediator"]
            return False
        alive = {streamer.id for streamer in reply.streamers if streamer.alive}
        self.missing = [name for name in self.expected if name not in alive]
        return not self.missing

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()  # type: ignore[attr-defined]
            self._channel = None


@dataclass
class EtcdReadyCheck:
    """etcd mode: every expected streamer SERVING (its etcd lease proven) and every mediator
    answering ClusterStatus.Status, each asked on its own address."""

    mediators: dict[str, str]  # name -> host:port
    streamers: dict[str, str]
    tls: tuple[Path | None, Path | None, Path | None] | None
    _channels: dict[str, object] = field(default_factory=dict, repr=False)
    missing: list[str] = field(default_factory=list)

    def _channel(self, address: str) -> object:
        if address not in self._channels:
            from logstream.node.channel import sync_channel, with_options
            from logstream.node.net import CHANNEL_OPTIONS
            from logstream.node.tls import channel_credentials

            options = with_options(CHANNEL_OPTIONS, initial_reconnect_backoff_ms=100, min_reconnect_backoff_ms=100,
                                   max_reconnect_backoff_ms=250)
            self._channels[address] = sync_channel(address, None if self.tls is None else channel_credentials(*self.tls),
                                                   options)
        return self._channels[address]

    def __call__(self) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from logstream._proto import logstream_pb2, logstream_pb2_grpc

        missing = []
        for name, address in self.mediators.items():
            try:
                logstream_pb2_grpc.ClusterStatusStub(self._channel(address)).Status(  # type: ignore[no-untyped-call]
                    logstream_pb2.StatusRequest(), timeout=1.0)
            except grpc.RpcError:
                missing.append(name)
        for name, address in self.streamers.items():
            try:
                reply = health_pb2_grpc.HealthStub(self._channel(address)).Check(  # ready: its lease proven
                    health_pb2.HealthCheckRequest(service=WRITE_SERVICE), timeout=1.0)
            except grpc.RpcError:
                missing.append(name)
                continue
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                missing.append(name)
        self.missing = missing
        return not missing

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()  # type: ignore[attr-defined]
        self._channels.clear()


class Runner:
    """One run of supervisord with the cluster's nodes, from start to a clean exit."""

    def __init__(self, config: ClusterConfig, nodes: Sequence[Node], paths: RunPaths, cwd: Path,
                 out: IO[str] | None = None, started: float | None = None,
                 python: str = sys.executable, ready: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.nodes = list(nodes)
        self.paths = paths
        self.cwd = cwd
        self.python = python
        self.started = time.monotonic() if started is None else started
        # sys.stdout when running, not when this module was imported (tests swap it)
        self.printer = Printer(["supervisord", *(node.name for node in self.nodes)], out or sys.stdout)
        self.exit_signal: int | None = None
        self.force = False
        self.children: dict[int, str] = {}  # pid -> node name, from supervisord's "spawned:" lines
        self.fatal: list[str] = []  # nodes supervisord gave up on (FATAL), in order
        self.last_output: dict[str, str] = {}  # each node's last non-empty output line: why it failed
        self.process: subprocess.Popen[bytes] | None = None
        streamers = [node.name for node in self.nodes if node.role == "streamer"]
        tls = config.tls
        files = None if tls is None or tls.crt is None else tuple(
            None if p is None else (p if p.is_absolute() else cwd / p) for p in (tls.ca, tls.crt, tls.pk)
        )
        if ready is None and config.etcd is not None:
            ready = EtcdReadyCheck({n.name: n.address for n in self.nodes if n.role == "mediator"},
                                   {n.name: n.address for n in self.nodes if n.role == "streamer"},
                                   files)  # type: ignore[arg-type]
        self.ready_check = ready or ReadyCheck(mediator_address(config), streamers, files)  # type: ignore[arg-type]
        self.followers = {node.name: Follower(paths.node_log(node.name)) for node in self.nodes}
        self.followers["supervisord"] = Follower(paths.log)

    # signal handlers: record only
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.exit_signal is not None:
            self.force = True  # a second Ctrl-C: stop waiting for a graceful stop
        else:
            self.exit_signal = signum

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            return self._run()
        except BaseException:
            if self.process is not None:  # a bug or an unexpected error: leave no process behind
                self._kill_leftovers()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close()

    def _start(self) -> None:
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        try:
            text = render(self.config.cluster.name, self.nodes, self.paths, self.cwd, self.python)
        except ValueError as exc:  # e.g. a line break in a path
            raise RenderError(str(exc)) from None
        self.paths.conf.write_text(text, encoding="utf-8")
        for follower in self.followers.values():
            follower.poll()  # position every follower at the end of earlier runs' output
        output = (self.paths.run_dir / "supervisord.out").open("ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(self.paths.conf)],
                cwd=self.cwd, env=clean_environment(), stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,  # our Ctrl-C must not reach the nodes
                # Whatever ends `run` (SIGKILL too), supervisord gets SIGTERM and stops the nodes.
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        finally:
            output.close()

    def _run(self) -> int:
        names = ", ".join(node.name for node in self.nodes)
        self.printer.say(f"starting cluster \"{self.config.cluster.name}\" ({names}) under supervisord; "
                         f"run dir {self._shown(self.paths.run_dir)}")
        self._start()
        assert self.process is not None
        ready, warned, next_check, answered = False, False, 0.0, False
        while True:
            if not answered:
                # supervisord spawns its programs only after its first poll() returns, which
                # otherwise takes its full 1s timeout; a connection to its socket ends it early.
                answered = socket_answers(self.paths)
            self._pump()
            if self.exit_signal is not None:
                return self._shutdown(self.exit_signal)
            if self.fatal:
                return self._give_up(self.fatal[0])
            code = self.process.poll()
            if code is not None:
                return self._supervisord_ended(code)
            now = time.monotonic()
            if answered and not ready and now >= next_check:  # (the first check imports grpc: slow)
                next_check = now + READY_POLL_S
                if self.ready_check():
                    ready = True
                    self.printer.say(self._summary(now - self.started))
                elif not warned and now - self.started > READY_WARN_S:
                    warned = True
                    missing = ", ".join(getattr(self.ready_check, "missing", []) or ["?"])
                    self.printer.say(f"not ready after {READY_WARN_S:.0f}s: waiting for {missing} "
                                     f"(see {self._shown(self.paths.logs)})")
            time.sleep(LOOP_S)

    def _pump(self, final: bool = False) -> None:
        for name, follower in self.followers.items():
            for line in follower.poll(final):
                if name == "supervisord":
                    match = _SPAWNED_RE.search(line)
                    if match:
                        self.children[int(match.group(2))] = match.group(1)
                    if any(noise in line for noise in _QUIET):
                        continue
                    fatal = _FATAL_RE.search(line)
                    if fatal and fatal.group(1) not in self.fatal:
                        self.fatal.append(fatal.group(1))
                elif line.strip():
                    self.last_output[name] = line.strip()
                self.printer.line(name, line)

    def _summary(self, elapsed_s: float) -> str:
        streamers = [node for node in self.nodes if node.role == "streamer"]
        local = any(node.role == "mediator" for node in self.nodes)
        addresses = mediator_addresses(self.config)
        parts = [f"mediator{'s' if len(addresses) > 1 else ''} {', '.join(addresses)}{'' if local else ' (remote)'}"]
        if self.config.etcd is not None:
            managed = " (started here)" if any(node.role == "etcd" for node in self.nodes) else ""
            parts.insert(0, f"etcd {','.join(etcd_endpoints(self.config))}{managed}")
        elsewhere = [name for name in self.config.streamer_names() if name not in {n.name for n in streamers}]
        listed = ", ".join([f"{node.name} {node.address}" for node in streamers]
                           + ([f"{', '.join(elsewhere)} elsewhere"] if elsewhere else []))
        parts.append(f"{len(streamers)} streamer{'s' if len(streamers) != 1 else ''} ({listed})")
        if streamers:
            root = str(self.config.streamers.path)
            parts.append(f"logs in {root if root.startswith(('.', '/', '~')) else './' + root}")
        return f"cluster \"{self.config.cluster.name}\" ready in {elapsed_s:.1f}s: " + ", ".join(parts)

    def _shown(self, path: Path) -> str:
        try:
            return "./" + str(path.relative_to(self.cwd))
        except ValueError:
            return str(path)

    def _stop_budget_s(self) -> float:
        streamers = [stop_wait_s(node) for node in self.nodes if node.role == "streamer"]
        mediator = [stop_wait_s(node) for node in self.nodes if node.role == "mediator"]
        etcd = [stop_wait_s(node) for node in self.nodes if node.role == "etcd"]
        return max(streamers, default=0) + max(mediator, default=0) + max(etcd, default=0) + KILL_MARGIN_S

    def _shutdown(self, signum: int) -> int:
        name = signal.Signals(signum).name
        self.printer.say(f"{name}: stopping the streamers, then the mediator")
        self._stop_all()
        return 128 + signum

    def _why_fatal(self, node: str) -> str:
        """The node's last output line (its error, as nodes print one line and exit 2), else
        supervisord's spawn error (e.g. a command that cannot be executed)."""
        if node in self.last_output:
            return self.last_output[node]
        try:
            with supervisor_rpc(self.paths, timeout_s=2.0) as rpc:
                spawnerr = str(rpc.getProcessInfo(process_name(node)).get("spawnerr") or "")
        except (OSError, xmlrpc.client.Error):  # supervisord is gone or busy: the log file still says it
            spawnerr = ""
        return spawnerr or "it printed nothing"

    def _give_up(self, node: str) -> int:
        """A node supervisord gave up on: a half cluster is not a cluster, so stop the rest and fail."""
        self.printer.say(f"{node} failed to start and supervisord gave up on it: {self._why_fatal(node)} "
                         f"(see {self._shown(self.paths.node_log(node))}); stopping the cluster")
        self._stop_all()
        return 1

    def _stop_all(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            # supervisord's own shutdown stops groups in reverse priority order: streamers, mediator.
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_budget_s()
        while self.process.poll() is None and time.monotonic() < deadline and not self.force:
            self._pump()
            time.sleep(LOOP_S)
        if self.process.poll() is None:
            why = "a second signal" if self.force else f"still running after {self._stop_budget_s():.0f}s"
            self.printer.say(f"{why}: killing supervisord and every node")
        self._kill_leftovers()
        self._pump(final=True)
        self.printer.say(f"cluster \"{self.config.cluster.name}\" stopped")

    def _supervisord_ended(self, code: int) -> int:
        self._kill_leftovers()
        self._pump(final=True)
        if code == 0:  # `logstream stop` asked supervisord to shut down
            self.printer.say(f"cluster \"{self.config.cluster.name}\" stopped")
            return 0
        output = self.paths.run_dir / "supervisord.out"
        try:
            tail = output.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            tail = []
        for line in tail:
            self.printer.line("supervisord", line)
        self.printer.say(f"supervisord exited with code {code}; cluster stopped (see {self._shown(output)})")
        return 1

    def _kill_leftovers(self) -> None:
        """SIGKILL supervisord's process group and each node's own group (supervisord gives every
        program its own), for whatever is still alive."""
        assert self.process is not None
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self._pump()
        for pid, name in list(self.children.items()):
            if alive(pid) and is_our_node(pid, name):
                self.printer.say(f"{name} (pid {pid}) outlived supervisord: killing it")
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def _close(self) -> None:
        for follower in self.followers.values():
            follower.close()
        close = getattr(self.ready_check, "close", None)
        if close is not None:
            close()
