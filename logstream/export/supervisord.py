"""Planned nodes -> an include-able supervisord program group (`[program:x]` sections and one
`[group:logstream-NAME]`), with no `[supervisord]` section, for an existing supervisord's conf.d.

Program sections are named `logstream-NAME-NODE` (unique beside other clusters' programs) and
each sets `process_name=NODE`, so supervisorctl knows them as `logstream-NAME:NODE`. The same
command lines and stop settings as `logstream run`'s supervisord.conf (one `program_settings`).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from logstream.cluster import Node
from logstream.supervisor.render import escape, program_settings


def group_name(cluster: str) -> str:
    return f"logstream-{cluster}"


def program_name(cluster: str, node: str) -> str:
    return f"{group_name(cluster)}-{node}"


def conf_name(cluster: str) -> str:
    return f"{group_name(cluster)}.conf"


def render(cluster: str, nodes: Sequence[Node], cwd: Path, python: str, log_dir: Path,
           user: str | None = None) -> dict[str, str]:
    """{file name: text}: one .conf holding every node's program and their group."""
    lines = [
        f"; written by `logstream export --format supervisord`; include it from supervisord.conf:",
        "; [include]",
        f"; files = /path/to/{conf_name(cluster)}",
    ]
    for node in nodes:
        # Within the group supervisord starts lower priorities first and signals them last on a stop
        # (without waiting in between: one group keeps `supervisorctl stop logstream-NAME:*` whole).
        priority = 1 if node.role == "mediator" else 2
        lines += ["", f"[program:{program_name(cluster, node.name)}]", f"process_name={escape(node.name)}"]
        lines += program_settings(node, cwd, python, priority, log_dir / f"{node.name}.log",
                                  {"PYTHONUNBUFFERED": "1"}, user=user)
    programs = ",".join(program_name(cluster, node.name) for node in nodes)
    lines += ["", f"[group:{group_name(cluster)}]", f"programs={programs}", ""]
    return {conf_name(cluster): "\n".join(lines)}
