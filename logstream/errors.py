"""Errors a user can cause and fix: their one base class, and the one way the CLI prints them."""

from __future__ import annotations

import sys
from typing import TextIO


class UserError(Exception):
    """A problem in what the user gave (a flag, a file, a port): library code raises a subclass
    naming the cause; `logstream.commands.main` prints it as one line and exits 2."""


def report(prog: str, error: UserError, stream: TextIO | None = None) -> int:
    """Print `error` as `<prog>: error: <problem>`, one line per problem (a config error may hold
    several); the exit code of a user error, 2."""
    for problem in str(error).splitlines() or [type(error).__name__]:
        print(f"{prog}: error: {problem}", file=stream or sys.stderr)
    return 2
