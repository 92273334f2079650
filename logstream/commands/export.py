"""`logstream export FILE --format systemd|supervisord|k8s --out DIR`: the cluster's nodes, with the
command lines `logstream run` gives them, as files for another process manager (as `honcho export`).

The files are rendered in memory, written to a temporary folder beside DIR and moved into place,
so a failure leaves no half-written export behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from logstream import __version__
from logstream.cluster import ConfigError, load_cluster, plan_nodes
from logstream.commands.cluster_options import add_cluster_options, short_flags
from logstream.config.goflags import GoFlagParser, UsageError
from logstream.export import k8s, supervisord, systemd

FORMATS = ("systemd", "supervisord", "k8s")


def build_parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream export", allow_abbrev=False,
                     description="Write the cluster's nodes as systemd units, an include-able supervisord "
                                 "program group, or Kubernetes manifests.")
    parser.add_argument("file", metavar="FILE", help="the cluster file (TOML)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into (made if missing)")
    parser.add_argument("--force", action="store_true",
                        help="write into a folder that is not empty (files of the same names are replaced)")
    add_cluster_options(parser)
    parser.add_argument("--python", metavar="PATH", default=sys.executable,
                        help="systemd, supervisord: the Python that runs `-m logstream` (default: this one, "
                             f"{sys.executable})".replace("%", "%%"))
    parser.add_argument("--user", metavar="USER", help="systemd, supervisord: run the nodes as this user")
    parser.add_argument("--image", metavar="IMAGE", default=f"logstream:{__version__}",
                        help="k8s: the container image (built from the Dockerfile; default: %(default)s)")
    parser.add_argument("--storage", metavar="QUANTITY", default="10Gi",
                        help="k8s: each streamer's volume claim (default: %(default)s)")
    parser.add_argument("--storage-class", metavar="NAME", help="k8s: the volume claims' storage class")
    return parser


def check_out_dir(out: Path, force: bool) -> None:
    """UsageError unless `out` is missing, an empty folder, or (with force) a folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
    if out.is_dir() and not force:
        present = sorted(entry.name for entry in out.iterdir())
        if present:
            shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
            raise UsageError(f"--out {out}: folder is not empty ({shown}); use --force to write into it")


def write_files(out: Path, files: Mapping[str, str]) -> None:
    """All of `files` into `out`, or none: written to a temporary folder beside it first."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would carry over to DIR
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
            os.chmod(staging / name, 0o644)
        if not out.exists():
            staging.rename(out)
            return
        if not any(out.iterdir()):
            out.rmdir()
            staging.rename(out)
            return
        # --force into a folder with other files: leave those, replace ours one by one.
        for name in files:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class Export:
    files: dict[str, str]  # name -> text
    hint: str  # how to install them
    token: Path  # the cluster token's file the nodes are given
    log_dir: Path | None = None  # a folder the files name, which must exist


def render(args: argparse.Namespace, cwd: Path) -> Export:
    """The files for `args.format`; ConfigError, UsageError or ValueError when impossible."""
    config = load_cluster(args.file, args.set, short_flags(args))
    if config.etcd is not None or config.mediator.count > 1:
        # Refused rather than half-done: the exporters know one mediator and streamers only.
        raise UsageError(f"{args.file}: export writes a single-mediator cluster without [etcd] only; "
                         "run an etcd-mode cluster with `logstream run`")
    nodes = plan_nodes(config, cwd)
    cluster = config.cluster.name
    # Every node is given the same -token-file (see plan_nodes).
    token = Path(k8s.flag_values(nodes[0].flags)["token-file"])
    if args.format == "k8s":
        overridden = [table.name for table in config.streamer]
        options = k8s.K8sOptions(args.image, args.storage, args.storage_class)
        files = k8s.render(cluster, nodes, overridden, options)
        base = k8s.base_name(cluster)
        tls = (f"; and the TLS one: `kubectl create secret generic {base}-tls --from-file=ca.crt=CA "
               "--from-file=tls.crt=CRT --from-file=tls.key=KEY`" if config.tls is not None else "")
        hint = (f"create the token Secret (`kubectl create secret generic {base}-token --from-file=token={token}`"
                f"{tls}), then `kubectl apply -f {args.out}`")
        return Export(files, hint, token)
    python = args.python
    if not Path(python).is_absolute():
        raise UsageError(f"--python {python}: must be an absolute path (systemd and supervisord need one)")
    if args.format == "systemd":
        files = systemd.render(cluster, nodes, cwd, python, args.user)
        hint = (f"copy them to /etc/systemd/system, then `systemctl daemon-reload && "
                f"systemctl enable --now {systemd.target_name(cluster)}`")
        return Export(files, hint, token)
    run_dir = config.cluster.run_dir.expanduser()
    log_dir = (run_dir if run_dir.is_absolute() else cwd / run_dir) / "logs"
    files = supervisord.render(cluster, nodes, cwd, python, log_dir, args.user)
    hint = (f"include {supervisord.conf_name(cluster)} from your supervisord.conf ([include] files = ...), then "
            f"`supervisorctl update`; its nodes are {supervisord.group_name(cluster)}:NODE, logging to {log_dir}")
    return Export(files, hint, token, log_dir)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        export = render(args, Path.cwd())
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"logstream export: error: {problem}", file=sys.stderr)
        return 2
    except ValueError as exc:  # k8s.ExportError, a line break in a path
        raise UsageError(str(exc)) from None
    check_out_dir(out, args.force)
    from logstream.node.token_file import ensure_token

    try:
        # What the nodes expect to find, as `logstream run` makes it: the cluster token (one per
        # cluster, kept), and the log folder supervisord refuses a configuration without.
        ensure_token(export.token)
        if export.log_dir is not None:
            export.log_dir.mkdir(parents=True, exist_ok=True)
        write_files(out, export.files)
    except OSError as exc:
        raise UsageError(f"{exc.filename or out}: {exc.strerror or exc}") from None
    print(f"logstream export: wrote {', '.join(sorted(export.files))} to {out}")
    print(f"logstream export: {export.hint}")
    return 0
