"""The `logstream` command: picks a subcommand and turns user errors into one line and exit 2 (and a
closed stdout pipe into a quiet exit 141).

Each subcommand lives in its own module as `main(argv: list[str]) -> int`, imported only when used,
so `logstream streamer` never pays for the supervisor code and vice versa. `pip install logstream`
is the client only: a command that needs a module of the server extra says what to install.
"""

from __future__ import annotations

import importlib
import os
import sys

# grpc's core writes its own log lines (e.g. a failed TLS handshake's) straight to stderr; our commands
# say what went wrong themselves. Set before any command imports grpc; a user's own setting wins
# (GRPC_VERBOSITY=INFO shows them again).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from logstream import __version__
from logstream.errors import UserError, report

# Top-level modules that only `pip install 'logstream[server]'` installs (pyproject.toml).
SERVER_MODULES = frozenset({"grpc_health", "grpc_reflection", "pydantic", "pydantic_core", "pydantic_settings",
                            "tomli_w", "supervisor", "prometheus_client", "cryptography", "uvloop", "aetcd"})


class ServerExtraMissing(UserError):
    """A command needs a module of the server extra, which is not installed."""

    def __init__(self, module: str) -> None:
        self.module = module
        super().__init__(f"needs the server dependencies (module {module!r} is not installed): "
                         "pip install 'logstream[server]'")


def server_module_missing(exc: ImportError) -> str | None:
    """The top-level server-extra module whose absence raised `exc`, or None for any other import error
    (decided on the exception's type and `name`, never its text)."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
        return None
    top = exc.name.split(".")[0]
    return top if top in SERVER_MODULES else None


# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("logstream.commands.run:main", "launch a whole cluster from a TOML file under supervisord"),
    "streamer": ("logstream.streamer.main:main", "run one streamer (writes lines to files)"),
    "mediator": ("logstream.mediator.main:main", "run the mediator (routes lines to streamers)"),
    "send": ("logstream.commands.send:main", "send lines (arguments or stdin) to a mediator or streamer"),
    "status": ("logstream.commands.status:main", "show a cluster's streamers, files and counters"),
    "stop": ("logstream.commands.control:stop_main", "stop a cluster started with `logstream run`"),
    "restart": ("logstream.commands.control:restart_main", "restart one node of a running cluster"),
    "init": ("logstream.commands.init:main", "write a commented starter cluster file"),
    "config": ("logstream.commands.init:config_main", "show the effective configuration of a cluster file"),
    "export": ("logstream.commands.export:main", "write a cluster as systemd units, a supervisord group or k8s manifests"),
    "certs": ("logstream.commands.certs:main", "make a development CA and node certificates"),
    "bench": ("logstream.commands.bench:main", "measure lines/s and latency, with a direct-append baseline"),
}

USAGE = "usage: logstream [--version] COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(
    f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()
) + "\n\n`logstream COMMAND --help` describes each command."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("--version", "-version"):
        print(f"logstream {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"logstream: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[name][0].split(":")
    try:
        try:
            # Inside the try: a command imports its dependencies here, or lazily while it runs.
            function = getattr(importlib.import_module(module_name), function_name)
            return int(function(rest))
        except ModuleNotFoundError as exc:
            module = server_module_missing(exc)
            if module is None:
                raise
            raise ServerExtraMissing(module) from exc
    except UserError as exc:  # UsageError and every library error a user can fix
        return report(f"logstream {name}", exc)
    except KeyboardInterrupt:
        return 130


# The exit code of a command whose reader went away (`logstream status FILE | head -3`): 128 + SIGPIPE,
# what a shell shows for a program SIGPIPE ended, so `set -o pipefail` still notices the cut output.
BROKEN_PIPE_EXIT = 141


def _quiet_stdout() -> None:
    """Python's documented recipe (library/signal.html, "Note on SIGPIPE"): point stdout at devnull
    so the interpreter's own final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def entry() -> None:
    try:
        code = main()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(BROKEN_PIPE_EXIT)
    try:
        sys.stdout.flush()  # here, not at interpreter exit, where a failure cannot be caught
    except BrokenPipeError:
        _quiet_stdout()
        code = BROKEN_PIPE_EXIT
    except OSError:  # e.g. EIO: the terminal went away (SIGHUP); the command's own code stands
        _quiet_stdout()
    sys.exit(code)


if __name__ == "__main__":  # `python -m logstream.commands.main` as `python -m logstream`
    entry()
