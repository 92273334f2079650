"""The Go-style flag parser every command uses (`-port 8080`, `--port=8080`, no abbreviations),
without pydantic: `send` and `status -mediator` run in a client-only install.

`config/flags.py` builds a node's flags from its settings model on top of this parser.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from logstream.errors import UserError


class UsageError(UserError):
    """A mistake the user made on the command line, in the environment or in a config file."""


class GoFlagParser(argparse.ArgumentParser):
    """argparse that raises UsageError and, like Go's flag package, never expands abbreviations."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def _get_option_tuples(self, option_string: str) -> list[tuple[Any, ...]]:
        # Python 3.11 expands single-dash prefixes (-consol -> -console) even with allow_abbrev=False.
        return []


_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}


def go_bool(text: str) -> bool:
    """A boolean flag's value as Go's flag package reads it: 1/t/true/yes/on, 0/f/false/no/off."""
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (use true or false)")


def join_flag_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Turn `-size -1B` into `-size=-1B`, so that values starting with '-' reach their flag."""
    takes_value = {
        option
        for action in parser._actions
        if action.nargs is None
        for option in action.option_strings
    }
    joined: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            joined.extend(argv[index:])
            break
        if token in takes_value and index + 1 < len(argv):
            joined.append(f"{token}={argv[index + 1]}")
            index += 2
            continue
        joined.append(token)
        index += 1
    return joined
