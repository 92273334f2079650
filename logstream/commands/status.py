"""`logstream status FILE [--json]` (supervisord's and the mediator's view of a cluster started with
`logstream run`) and `logstream status -mediator HOST:PORT [--json]` (the mediator's view)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from logstream.config.goflags import GoFlagParser, UsageError
from logstream.errors import report
from logstream.node.address import AddressError, parse_address
from logstream.node.cluster_status import StatusError, fetch_status, format_table, unreachable

__all__ = ["StatusError", "cluster_main", "fetch_status", "format_table", "main", "mediator_main"]


def _parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream status", usage="logstream status FILE [--json]\n"
                          "       logstream status -mediator HOST:PORT [--json] [-ca CA -crt CRT -pk PK]",
                          description="Show a cluster's streamers, their files and "
                     "lines, and the mediator's counters, as the mediator sees them.", allow_abbrev=False)
    parser.add_argument("-mediator", "--mediator", "-target", "--target", dest="mediator", metavar="HOST:PORT",
                        required=True, help="the mediator's address")
    parser.add_argument("-json", "--json", action="store_true",
                        help="print one JSON object, as `status FILE --json` lists under \"mediators\" "
                             "(docs/operations.md); an unreachable mediator's has \"error\" set")
    parser.add_argument("-ca", "--ca", type=Path, help="CA certificate that signed the mediator's certificate (TLS)")
    parser.add_argument("-crt", "--crt", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("-pk", "--pk", type=Path, help="client private key (mutual TLS)")
    parser.add_argument("-timeout", "--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="give up after this long (default: 5)")
    return parser


BOTH_FORMS = ("logstream status FILE [--json] (a cluster started with `logstream run FILE`) or "
              "logstream status -mediator HOST:PORT [--json] (any mediator)")


def print_json(view: dict[str, Any]) -> None:
    """Both forms print alike: indented, keys sorted; the -mediator form's object is one element of
    the FILE form's "mediators" (node/status_schema.py)."""
    print(json.dumps(view, indent=2, sort_keys=True, default=str))


def main(argv: list[str]) -> int:
    if not argv:
        raise UsageError(f"give a cluster file or a mediator's address: {BOTH_FORMS}")
    if argv and not argv[0].startswith("-"):  # `logstream status cluster.toml`: supervisord's view too
        return cluster_main(argv[0], argv[1:])
    return mediator_main(argv)


def mediator_main(argv: list[str]) -> int:
    """`logstream status -mediator HOST:PORT [--json]`."""
    args = _parser().parse_args(argv)
    try:
        target = parse_address(args.mediator)
    except AddressError as exc:
        raise UsageError(f"-mediator: {exc}") from None
    from logstream.node.tls import channel_credentials

    creds = channel_credentials(args.ca, args.crt, args.pk)
    try:
        status = fetch_status(target, creds, args.timeout)
    except StatusError as exc:
        from logstream.node.channel import explain_failed_connection

        # As `send` does: a handshake that fails says which side lacks TLS or which files to check.
        hint = explain_failed_connection(target, creds, args.ca is not None, min(args.timeout, 5.0))
        print(f"logstream status: {exc}{f' ({hint})' if hint else ''}", file=sys.stderr)
        if args.json:  # the same object as an unreachable mediator's in `status FILE --json`
            print_json(unreachable(target, str(exc).splitlines()[0]))
        return 1
    if args.json:
        print_json(status)
    else:
        print(format_table(status))
    return 0


def cluster_main(path: str, argv: list[str]) -> int:
    """`logstream status FILE [--set k=v]... [--json]`."""
    from logstream.cluster import ConfigError, load_cluster
    from logstream.supervisor.runs import locate
    from logstream.supervisor.status import cluster_view

    parser = GoFlagParser(prog="logstream status", allow_abbrev=False,
                     description="supervisord's view and the mediator's view of a cluster started with `logstream run`")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--run-dir", metavar="DIR")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object (docs/operations.md); each of \"mediators\" as "
                             "`status -mediator ADDR --json` prints it")
    args = parser.parse_args(argv)
    try:
        config = load_cluster(path, args.set, {"cluster.run_dir": args.run_dir} if args.run_dir else {})
    except ConfigError as exc:
        return report("logstream status", exc)
    located = locate(path, config)  # from this folder, or where `run FILE` recorded it was started
    result, code = cluster_view(config, located.cwd, None if located.running else f"not running ({located.tried()})")
    if args.json:
        print_json(result)
    else:
        print(_cluster_text(result))
    return code


def _cluster_text(result: dict[str, Any]) -> str:
    lines = [f"cluster \"{result['cluster']}\" (run dir {result['run_dir']})"]
    supervisord = result["supervisord"]
    if supervisord["error"] is not None:
        lines.append(f"supervisord: {supervisord['error']}")
    else:
        rows = [("NODE", "STATE", "PID", "UPTIME", "SUPERVISORCTL")] + [
            (p["name"], p["state"], str(p["pid"] or "-"), p["uptime"], p["supervisorctl"])
            for p in supervisord["processes"]
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.append(f"(supervisorctl -c {supervisord['conf']} stop|start|restart|tail NAME, "
                     "with NAME as in SUPERVISORCTL)")
    for mediator in result["mediators"]:
        lines += ["", format_table(mediator)]
    etcd = result["etcd"]
    if etcd is not None:
        lines.append("")
        where = f"etcd {','.join(etcd['endpoints'])} (records under /logstream/{etcd['cluster']}/)"
        if etcd["error"] is not None:
            lines.append(f"{where}: unreachable: {etcd['error']}")
        else:
            members = ", ".join(f"{name} {addr}" for name, addr in etcd["members"].items()) or "none"
            lines += [where, f"streamers with a live lease: {members}", f"owned keys: {len(etcd['owners'])}"]
            rows = [("PATH", "FILENAME", "OWNER")] + [(o["path"] or ".", o["filename"], o["owner"])
                                                      for o in etcd["owners"][:OWNERS_SHOWN]]
            widths = [max(len(row[i]) for row in rows) for i in range(3)]
            lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
            if len(etcd["owners"]) > OWNERS_SHOWN:
                lines.append(f"... and {len(etcd['owners']) - OWNERS_SHOWN} more (--json lists them all)")
    return "\n".join(lines)


# Owned keys listed in the readable view (--json lists all).
OWNERS_SHOWN = 50
