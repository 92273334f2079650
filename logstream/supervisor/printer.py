"""honcho's printer for `logstream run`: each node's lines as `name | line`, and the run's own messages."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO

_COLOURS = ["36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94"]


class Printer:
    """honcho's printer: `name | line`, names padded to one width, coloured on a terminal."""

    def __init__(self, names: Sequence[str], out: IO[str], colour: bool | None = None) -> None:
        self.width = max(len(name) for name in names)
        self.out = out
        self.closed = False
        use_colour = out.isatty() and "NO_COLOR" not in os.environ if colour is None else colour
        self.colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)} if use_colour else {}

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<{self.width}} | "
        if name in self.colours:
            prefix = f"\033[{self.colours[name]}m{prefix}\033[0m"
        self._write(prefix + text + "\n")

    def say(self, text: str) -> None:
        self._write(f"logstream: {text}\n")

    def _write(self, text: str) -> None:
        # A closed terminal (SIGHUP) or a closed pipe must not stop the run's shutdown: the nodes'
        # output stays in their log files, so drop ours from then on.
        if self.closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            self.closed = True
