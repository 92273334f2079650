"""Where `logstream run FILE` was started, recorded per cluster file, so `stop`, `status` and `restart
FILE` find the cluster from any folder.

Relative paths in a cluster file count from the folder `run` was started in (the configs say so and
the README's commands rely on it), so a command typed in another folder cannot compute the run
directory alone. `run` records its folder under the user's runtime directory
(`$XDG_RUNTIME_DIR/logstream/runs`, else `~/.cache/logstream/runs`), keyed by the file's absolute path
and the run directory; the others try this folder first, then the recorded ones, and keep whichever
supervisord answers. A stale record costs one failed connection; nothing trusts it beyond that.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from logstream.cluster import ClusterConfig
from logstream.supervisor.control import paths_for, socket_answers
from logstream.supervisor.render import RunPaths


def records_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "logstream" / "runs"
    return Path(env.get("HOME") or Path.home()) / ".cache" / "logstream" / "runs"


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:16]


def record_run(file: Path, cwd: Path, run_dir: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Note that `run file` started in `cwd` uses `run_dir`; the record's path, or None when it
    cannot be written (the cluster runs anyway; only finding it from elsewhere is lost)."""
    folder = records_dir(environ)
    record = folder / f"{_digest(file.resolve())}-{_digest(run_dir)}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        record.write_text(json.dumps({"file": str(file.resolve()), "cwd": str(cwd), "run_dir": str(run_dir)}))
    except OSError:
        return None
    return record


def recorded_folders(file: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders `run file` was started in, newest first."""
    records = sorted(records_dir(environ).glob(f"{_digest(file.resolve())}-*.json"),
                     key=lambda p: p.stat().st_mtime if p.exists() else 0.0, reverse=True)
    folders: list[Path] = []
    for record in records:
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("file") == str(file.resolve()) and isinstance(data.get("cwd"), str):
            folders.append(Path(data["cwd"]))
    return folders


@dataclass(frozen=True)
class Located:
    """The folder a cluster's relative paths count from, its run directory's files, whether its
    supervisord answers, and every socket tried (for the message when none did)."""

    cwd: Path
    paths: RunPaths
    running: bool
    looked: tuple[Path, ...]

    def tried(self) -> str:
        """`no supervisord at A, nor at B`: every socket tried."""
        return "no supervisord at " + ", nor at ".join(str(p) for p in self.looked)


def locate(file: str | Path, config: ClusterConfig, cwd: Path | None = None,
           environ: Mapping[str, str] | None = None) -> Located:
    """This folder's run directory if its supervisord answers, else a recorded one that does; when
    none answers, this folder's (where a new `run` would put it)."""
    here = cwd or Path.cwd()
    candidates: list[Path] = [here, *recorded_folders(Path(file), environ)]
    tried: list[RunPaths] = []
    seen: set[Path] = set()
    for folder in candidates:
        paths = paths_for(config, folder)
        if paths.sock in seen:
            continue
        seen.add(paths.sock)
        tried.append(paths)
        if socket_answers(paths):
            return Located(folder, paths, True, tuple(p.sock for p in tried))
    return Located(here, tried[0], False, tuple(p.sock for p in tried))

