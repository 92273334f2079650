"""`logstream init [FILE]` (a commented starter cluster file) and `logstream config show|check FILE`."""

from __future__ import annotations

import sys
from pathlib import Path

from logstream.cluster import ClusterConfig, ConfigError, check_files, load_cluster, to_toml
from logstream.commands.cluster_options import add_cluster_options, short_flags
from logstream.config.goflags import GoFlagParser, UsageError
from logstream.errors import report

DEFAULT_FILE = "cluster.toml"

_HEADER = """\
# A logstream cluster: one mediator and N streamers, launched with `logstream run {file}`.
# Values here are overridden by LOGSTREAM_SECTION__KEY variables (e.g. LOGSTREAM_STREAMERS__COUNT=5)
# and by `--set section.key=value` on the command line. Sizes: 1MB, 512KiB, -1B (unlimited);
# durations: 5s, 250ms, 1m30s. Relative paths are taken from the folder you run logstream in.
"""

_OPTIONAL = """
# Per-node overrides: any [streamers] key (and host, advertise) for one streamer.
# [[streamer]]
# name = "s2"
# size = "10MB"

# TLS for every node and every call between them; omit for plaintext.
# crt + pk: server-only TLS; crt + pk + ca: mutual TLS (make development files with
# `logstream certs --out certs`).
# [tls]
# ca = "certs/ca.crt"
# crt = "certs/node.crt"
# pk = "certs/node.key"
"""


def starter_text(file: str) -> str:
    """The starter file: every key with its default, each after a comment saying what it does."""
    return _HEADER.format(file=file) + "\n" + to_toml(ClusterConfig.model_validate({}), comments=True) + _OPTIONAL


def main(argv: list[str]) -> int:
    parser = GoFlagParser(prog="logstream init", allow_abbrev=False, description="Write a commented starter cluster file.")
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE, metavar="FILE",
                        help=f"where to write it (default: {DEFAULT_FILE})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    path = Path(args.file)
    if path.is_dir():
        raise UsageError(f"{path} is a folder")
    if path.exists() and not args.force:
        print(f"logstream init: error: {path} already exists (use --force to overwrite it)", file=sys.stderr)
        return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_text(args.file), encoding="utf-8")
    print(f"logstream init: wrote {path}; start it with `logstream run {path}`")
    return 0


def config_main(argv: list[str]) -> int:
    parser = GoFlagParser(prog="logstream config", allow_abbrev=False,
                     description="show: print the effective configuration as TOML; check: validate it.")
    parser.add_argument("action", choices=["show", "check"])
    parser.add_argument("file", metavar="FILE", help="the cluster file (TOML), as given to `logstream run`")
    add_cluster_options(parser)
    args = parser.parse_args(argv)

    prog = f"logstream config {args.action}"
    try:
        config = load_cluster(args.file, args.set, short_flags(args))
        if args.action == "check":
            problems = check_files(config, Path.cwd())
            if problems:
                raise ConfigError(problems)
    except ConfigError as exc:
        return report(prog, exc)
    if args.action == "show":
        sys.stdout.write(to_toml(config))
    else:
        print(f"{args.file}: ok (\"{config.cluster.name}\": {_shape(config)})")
    return 0


def _shape(config: ClusterConfig) -> str:
    """What the cluster runs: `mediator and 3 streamers`, `etcd (3 members), 2 mediators and 3 streamers`."""
    count = config.mediator.count
    shape = f"{'mediator' if count == 1 else f'{count} mediators'} and {config.streamers.count} streamers"
    if config.etcd is None:
        return shape
    etcd = (f"etcd ({config.etcd.members} member{'s' if config.etcd.members != 1 else ''}, started here)"
            if config.etcd.members else f"etcd at {','.join(config.etcd.endpoints or ())}")
    return f"{etcd}, {shape}"
