"""Planned nodes -> systemd units: one service per node and a target that groups them.

Streamers are ordered `After=` the mediator (so systemd starts it first and stops it last, the
order `logstream run`'s supervisord keeps); every unit is `PartOf=` the target, so
`systemctl stop logstream-NAME.target` stops the cluster. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from logstream.cluster.config import Node
from logstream.supervisor.render import stop_wait_s

# Seconds systemd waits before restarting a node that failed; with the default start limit
# (5 starts in 10 s) a node that fails at once is given up on, as supervisord's FATAL state.
RESTART_SEC = 2


def unit_prefix(cluster: str) -> str:
    return f"logstream-{cluster}"


def service_name(cluster: str, node: str) -> str:
    return f"{unit_prefix(cluster)}-{node}.service"


def target_name(cluster: str) -> str:
    return f"{unit_prefix(cluster)}.target"


def _value(text: str) -> str:
    """A unit-file value read back unchanged: `%` starts a specifier; one line only."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"a line break cannot be written into a systemd unit: {text!r}")
    return text.replace("%", "%%")


def quote_arg(arg: str) -> str:
    """One ExecStart= word: double-quoted (C escapes for `\\` and `"`), `%` and `$` doubled so that
    systemd neither expands specifiers nor environment variables in it."""
    escaped = _value(arg).replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'


def exec_start(argv: Sequence[str]) -> str:
    return " ".join(quote_arg(arg) for arg in argv)


def render_service(cluster: str, node: Node, cwd: Path, python: str, user: str | None = None) -> str:
    after = ["network.target"]
    wants: list[str] = []
    if node.role == "streamer":
        # Start after (and stop before) the mediator; pull it in when a streamer is started alone.
        mediator = service_name(cluster, "mediator")
        after.append(mediator)
        wants.append(mediator)
    lines = [
        "# written by `logstream export --format systemd`",
        "[Unit]",
        f"Description=logstream cluster {_value(cluster)}: {node.role} {node.name} ({_value(node.address)})",
        f"PartOf={target_name(cluster)}",
        f"After={' '.join(after)}",
    ]
    if wants:
        lines.append(f"Wants={' '.join(wants)}")
    lines += [
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start(node.argv(python))}",
        f"WorkingDirectory={_value(str(cwd))}",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if user is not None:
        lines.append(f"User={_value(user)}")
    lines += [
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}s",
        # The node drains for its -grace on SIGTERM and exits 0; SIGKILL only after that and a margin.
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={stop_wait_s(node)}s",
        "",
        "[Install]",
        f"WantedBy={target_name(cluster)}",
    ]
    return "\n".join(lines) + "\n"


def render_target(cluster: str, nodes: Sequence[Node]) -> str:
    services = " ".join(service_name(cluster, node.name) for node in nodes)
    return "\n".join([
        "# written by `logstream export --format systemd`",
        "[Unit]",
        f"Description=logstream cluster {_value(cluster)} (mediator and streamers)",
        f"Wants={services}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]) + "\n"


def render(cluster: str, nodes: Sequence[Node], cwd: Path, python: str, user: str | None = None) -> dict[str, str]:
    """{unit file name: text}: a service per node and the target grouping them."""
    files = {service_name(cluster, node.name): render_service(cluster, node, cwd, python, user) for node in nodes}
    files[target_name(cluster)] = render_target(cluster, nodes)
    return files
