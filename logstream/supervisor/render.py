"""ClusterConfig nodes -> supervisord.conf text, and where a run directory keeps its files.

Values are %-escaped (supervisord expands `%(name)s` in every value, as honcho's exporter knows)
and commands are shell-quoted (supervisord splits them with shlex). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from logstream.cluster import Node
from logstream.node.parent import PARENT_DEATH_ENV

# Unix socket paths are limited (108 bytes on Linux, 104 on macOS); beyond this, use /tmp.
_MAX_SOCKET_PATH = 100
# Seconds supervisord waits after SIGTERM before SIGKILL, beyond the node's own -grace.
STOP_MARGIN_S = 5
STREAMERS_GROUP = "streamers"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run directory (all absolute)."""

    run_dir: Path
    conf: Path
    log: Path
    pid: Path
    sock: Path
    logs: Path

    def node_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @property
    def server_url(self) -> str:
        return f"unix://{self.sock}"


def run_paths(run_dir: Path) -> RunPaths:
    """Where supervisord's files live for `run_dir` (which must be absolute)."""
    sock = run_dir / "supervisor.sock"
    if len(str(sock).encode()) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
        sock = Path("/tmp") / f"logstream-{digest}.sock"
    return RunPaths(run_dir, run_dir / "supervisord.conf", run_dir / "supervisord.log",
                    run_dir / "supervisord.pid", sock, run_dir / "logs")


def escape(value: str, expansions: int = 1) -> str:
    """A value supervisord reads back unchanged after `expansions` rounds of %-expansion: `%`
    doubled per round (a program's stdout_logfile is expanded twice), no line breaks."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"a line break cannot be written into supervisord.conf: {value!r}")
    return value.replace("%", "%" * 2**expansions)


def process_name(node: str) -> str:
    """The name supervisord's XML-RPC knows a node by: `mediator`, `m2`, `e1`, `streamers:s1`."""
    return f"{STREAMERS_GROUP}:{node}" if re.fullmatch(r"s\d+", node) else node


# Start order (supervisord starts lower priorities first and stops them last): etcd, then the
# mediators, then the streamers.
PRIORITY = {"etcd": 0, "mediator": 1, "streamer": 2}


def stop_wait_s(node: Node) -> int:
    return math.ceil(node.grace_s) + STOP_MARGIN_S


def _environment(env: Mapping[str, str]) -> str:
    # supervisord parses KEY="value",KEY2="value" with shlex; quote and escape accordingly.
    parts = []
    for key, value in env.items():
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'{key}="{escape(quoted)}"')
    return ",".join(parts)


# A node must stay up this long to count as started. supervisord notices exits only once per
# second (its poll timeout), so 1s would count a node that crashes at once as started, and
# restart it forever instead of giving up (FATAL).
START_SECS = 3


def program_settings(node: Node, cwd: Path, python: str, priority: int, log_file: Path, env: Mapping[str, str], *,
                     user: str | None = None, startsecs: int = START_SECS, startretries: int = 3) -> list[str]:
    """The settings of one node's `[program:x]` section (after its header), the same for `logstream
    run`'s supervisord.conf and `logstream export --format supervisord`: its command line and folder,
    restarts, stop signal and wait, output to `log_file`, and its environment."""
    lines = [
        f"command={escape(shlex.join(node.argv(python)))}",
        f"directory={escape(str(cwd))}",
    ]
    if user is not None:
        lines.append(f"user={escape(user)}")
    return lines + [
        f"priority={priority}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={startsecs}",
        f"startretries={startretries}",
        "exitcodes=0",
        "stopsignal=TERM",
        f"stopwaitsecs={stop_wait_s(node)}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        # a program's stdout_logfile is %-expanded twice
        f"stdout_logfile={escape(str(log_file), expansions=2)}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
        f"environment={_environment(env)}",
    ]


def render(cluster_name: str, nodes: Sequence[Node], paths: RunPaths, cwd: Path, python: str,
           *, startsecs: int = START_SECS, startretries: int = 3) -> str:
    """supervisord.conf for `nodes`: a managed etcd's members first, then the mediators, then the
    streamers in one group (`PRIORITY`: started after, stopped before the mediators, all at once),
    each restarted on exit, logging stdout and stderr to run_dir/logs/NODE.log."""
    lines = [
        "; written by `logstream run`; edits are overwritten at the next run",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={escape(str(paths.log))}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={escape(str(paths.pid))}",
        f"childlogdir={escape(str(paths.logs))}",
        f"directory={escape(str(cwd))}",
        f"identifier=logstream-{escape(cluster_name)}",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={escape(str(paths.sock))}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl={escape(paths.server_url)}",
    ]
    streamers = [node.name for node in nodes if node.role == "streamer"]
    for node in nodes:
        lines += ["", f"[program:{node.name}]"]
        # supervisord killed outright must not leave its nodes behind (node/parent.py)
        lines += program_settings(node, cwd, python, PRIORITY[node.role], paths.node_log(node.name),
                                  {"PYTHONUNBUFFERED": "1", PARENT_DEATH_ENV: "TERM"},
                                  startsecs=startsecs, startretries=startretries)
    if streamers:
        lines += ["", f"[group:{STREAMERS_GROUP}]", f"programs={','.join(streamers)}",
                  f"priority={PRIORITY['streamer']}"]
    return "\n".join(lines) + "\n"
