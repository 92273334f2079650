"""The checks of a cluster file that need the file system: certificates, folders that are files, and
folders that cannot be written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from logstream.cluster.plan import absolute, setting_key, streamer_values
from logstream.cluster.schema import ClusterConfig, TlsSection


def _unwritable(folder: Path) -> str | None:
    """Why no file can be made in `folder`, found by making one: permission bits, a read-only mount
    and an immutable folder (`chattr +i`) all show, whoever we run as (root ignores only the first)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".logstream-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(handle)
    os.unlink(probe)
    return None


def _file_problem(key: str, path: Path, cwd: Path, writable: bool) -> str | None:
    """A folder we will create and write in: neither it nor a parent may be a file, and (with
    `writable`) it, or while it does not exist its nearest existing parent, must be writable."""
    full = absolute(path, cwd)
    for candidate in (full, *full.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == full else f"has a file as parent ({candidate})"
                return f"{key}: {path} {what}, not a folder"
            why = _unwritable(candidate) if writable else None
            if why:
                where = "" if candidate == full else f" (it would be made in {candidate})"
                return f"{key}: {path} cannot be written{where}: {why}"
            return None
    return None


def _tls_content_problems(tls: TlsSection, cwd: Path) -> list[str]:
    """Certificates and keys that are not PEM, or a key that does not match its certificate: the
    nodes would refuse to start, so say it before anything starts."""
    from logstream.node.tls import CredentialsError, read_certificates, read_key_pair  # imports grpc: only with TLS

    try:
        if tls.crt is not None and tls.pk is not None:
            read_key_pair(absolute(tls.crt, cwd), absolute(tls.pk, cwd))
        if tls.ca is not None:
            read_certificates("-ca", absolute(tls.ca, cwd))
    except CredentialsError as exc:
        return [exc.text(lambda flag: f"tls.{flag.removeprefix('-')}")]
    return []


def check_files(config: ClusterConfig, cwd: Path, nodes: Sequence[str] | None = None,
                writable: bool = False) -> list[str]:
    """Problems only the file system shows: missing certificates, folders that are files, and with
    `writable` (`run`, about to start nodes here) folders this user cannot write in. `config check`
    leaves that out: a file for another machine (`path = "/var/log/..."`) is checked anywhere."""
    problems: list[str] = []
    if config.tls is not None:
        for name in ("ca", "crt", "pk"):
            path: Path | None = getattr(config.tls, name)
            if path is None:
                continue
            full = absolute(path, cwd)
            if not full.exists():
                problems.append(f"tls.{name}: no such file: {path} (make development certificates with "
                                f"`logstream certs --out {path.parent}`)")
            elif not full.is_file():
                problems.append(f"tls.{name}: {path} is not a file")
        if not problems:
            problems += _tls_content_problems(config.tls, cwd)
    run_problem = _file_problem("cluster.run_dir", config.cluster.run_dir, cwd, writable)
    if run_problem:
        problems.append(run_problem)
    wanted = set(config.node_names() if nodes is None else nodes)
    reported: set[Path] = set()
    for index, name in enumerate(config.streamer_names(), start=1):
        if name not in wanted:
            continue
        path = streamer_values(config, index)["path"]
        problem = _file_problem(".".join(setting_key(config, name, "path")), path, cwd, writable)
        if problem and path not in reported:
            problems.append(problem)
            reported.add(path)
    return problems
