"""The options of every command that loads a cluster file (`run`, `export`, `config`): `--set` and
the short options, and the key paths the short options stand for (they win over `--set`)."""

from __future__ import annotations

import argparse

# short option's dest -> the key path it sets
SHORT_OPTIONS = {"streamers": "streamers.count", "run_dir": "cluster.run_dir", "path": "streamers.path"}


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """`--set SECTION.KEY=VALUE` (repeatable), `--streamers N`, `--run-dir DIR`, `--path DIR`."""
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any key, e.g. --set streamers.count=5 (repeatable)")
    parser.add_argument("--streamers", type=int, metavar="N", help="how many streamers (streamers.count)")
    parser.add_argument("--run-dir", metavar="DIR", help="supervisord's files and node output (cluster.run_dir)")
    parser.add_argument("--path", metavar="DIR", help="root folder for log files (streamers.path)")


def short_flags(args: argparse.Namespace) -> dict[str, object]:
    """The short options given, as key paths; they win over --set."""
    return {key: getattr(args, dest) for dest, key in SHORT_OPTIONS.items() if getattr(args, dest) is not None}
