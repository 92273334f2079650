"""`logstream streamer`: load settings, check the root, run the server until SIGTERM/SIGINT."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from logstream.config.flags import load_settings
from logstream.config.settings import StreamerSettings
from logstream.errors import UserError
from logstream.node.logs import setup_logging
from logstream.node.net import ListenError
from logstream.node.run import run_until_signalled

DESCRIPTION = (
    "Run one streamer: append log lines received over gRPC to <path>/<request path>/<filename>.log, "
    "rotating files at -size. Flags may be given as -flag or --flag; every flag also reads "
    "LOGSTREAM_STREAMER_<NAME> and the [streamer] table of -config FILE."
)


class RootError(UserError):
    """A -path that is not a writable folder (and cannot be made one)."""


class DescriptorLimitError(UserError):
    """A -max-open-files that does not fit under the open-files limit."""


def prepare_root(root: Path) -> None:
    """Create the root folder and prove it is writable, or raise RootError naming the problem."""
    if root.exists() and not root.is_dir():
        raise RootError(f"-path {root}: exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root, prefix=".logstream-probe-"):
            pass
    except OSError as exc:
        raise RootError(f"-path {root}: not a writable folder: {exc.strerror or exc}") from None


def check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, when host:port is taken (grpc would also print its own C-level error)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"-host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# Descriptors beyond the log files and folders: stdio, the event loop, grpc's sockets and pipes, client
# connections, the mediator channel, the debug server (an idle streamer holds about 20).
DESCRIPTOR_MARGIN = 64


def descriptor_shortfall(max_open_files: int, soft_limit: int, margin: int = DESCRIPTOR_MARGIN) -> str | None:
    """Why `max_open_files` cannot fit under the open-files limit (None: it fits); a negative limit
    is unlimited (RLIM_INFINITY)."""
    needed = max_open_files + margin
    if 0 <= soft_limit < needed:
        return (f"-max-open-files {max_open_files} needs {needed} descriptors ({margin} more for sockets), but the "
                f"open-files limit (ulimit -n) is {soft_limit}: lower -max-open-files or raise the limit")
    return None


def _open_files_limit() -> int:
    """Lift the soft open-files limit to the hard one; the soft limit then (-1: unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - best effort: the check below uses what we have
            pass
    return -1 if soft == resource.RLIM_INFINITY else soft


def main(argv: list[str]) -> int:
    settings = load_settings(StreamerSettings, argv, "logstream streamer", DESCRIPTION)
    setup_logging("streamer", settings.id or f"{settings.host}:{settings.port}", settings.log_level, settings.log_format)
    prepare_root(settings.path)
    check_port_free(settings.host, settings.port)
    problem = descriptor_shortfall(settings.max_open_files, _open_files_limit())
    if problem is not None:
        raise DescriptorLimitError(problem)
    from logstream.streamer.server import run

    def on_bound(node_id: str) -> None:
        setup_logging("streamer", node_id, settings.log_level, settings.log_format)

    return run_until_signalled(lambda stop: run(settings, stop, on_bound), settings.loop)
