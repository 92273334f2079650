"""`logstream streamer`: load settings, check the root, run the server until SIGTERM/SIGINT."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from ..config.flags import UsageError, load_settings
from ..config.settings import StreamerSettings
from ..logs import setup_logging
from ..node import run_until_signalled

DESCRIPTION = (
    "Run one streamer: append log lines received over gRPC to <path>/<request path>/<filename>.log, "
    "rotating files at -size. Flags may be given as -flag or --flag; every flag also reads "
    "LOGSTREAM_STREAMER_<NAME> and the [streamer] table of -config FILE."
)


def prepare_root(root: Path) -> None:
    """Create the root folder and prove it is writable, or raise UsageError naming the problem."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"-path {root}: exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root, prefix=".logstream-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"-path {root}: not a writable folder: {exc.strerror or exc}") from None


def check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, when host:port is taken (grpc would also print its own C-level error)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"-host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _raise_open_files_limit() -> None:
    """Each open log file takes two descriptors (file and folder): lift the soft limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - best effort
        pass


def main(argv: list[str]) -> int:
    settings = load_settings(StreamerSettings, argv, "logstream streamer", DESCRIPTION)
    setup_logging("streamer", settings.id or f"{settings.host}:{settings.port}", settings.log_level)
    prepare_root(settings.path)
    check_port_free(settings.host, settings.port)
    _raise_open_files_limit()
    from .server import run

    def on_bound(node_id: str) -> None:
        setup_logging("streamer", node_id, settings.log_level)

    return run_until_signalled(lambda stop: run(settings, stop, on_bound), settings.loop)
