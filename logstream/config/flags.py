"""Go-style flags for a settings model: `-port 8080`, `--port 8080`, `-port=8080`, `-console`.

The parser itself is `config/goflags.py` (no pydantic, for the client commands); this module adds the
flags of a settings model and the one-line validation errors.

Every field of the model gets a flag named after it (`health_interval` -> `-health-interval`).
Only flags actually given are passed on, so the model's precedence (flags > env > TOML > defaults)
decides the rest. Validation errors come back as one line naming the flag, variable or file key.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from logstream.config.settings import RoleSettings, flag_spelling, load_role
from logstream.config.types import show_value
from logstream.config.goflags import GoFlagParser, UsageError, go_bool, join_flag_values

__all__ = ["GoFlagParser", "UsageError", "build_parser", "describe_validation_error", "error_text", "flag_name",
           "join_flag_values", "load_settings"]

S = TypeVar("S", bound=RoleSettings)


def flag_name(field: str) -> str:
    return flag_spelling(field).removeprefix("-")


def build_parser(model: type[RoleSettings], prog: str, description: str) -> argparse.ArgumentParser:
    parser = GoFlagParser(prog=prog, description=description, allow_abbrev=False, argument_default=argparse.SUPPRESS)
    parser.add_argument("-config", "--config", metavar="FILE", type=Path,
                        help=f"TOML file whose [{model.toml_table}] table holds settings")
    for name, field in model.model_fields.items():
        flag = flag_name(name)
        description = field.description or name
        if "(default:" not in description:
            default = field.get_default(call_default_factory=True)
            if default not in (None, ""):
                description += f" (default: {show_value(field, default)})"
        if field.annotation in (bool, bool | None):
            # Go's flag package: `-console`, `-console=true`, `-console=false`.
            parser.add_argument(f"-{flag}", f"--{flag}", dest=name, nargs="?", const=True,
                                type=go_bool, metavar="BOOL", help=description)
        else:
            parser.add_argument(f"-{flag}", f"--{flag}", dest=name, metavar=flag.upper().replace("-", "_"),
                                help=description)
    return parser


def load_settings(model: type[S], argv: list[str], prog: str, description: str) -> S:
    """Parse `argv` and validate every source; raise UsageError with one line on any mistake."""
    parser = build_parser(model, prog, description)
    given = vars(parser.parse_args(join_flag_values(parser, argv)))
    config_file: Path | None = given.pop("config", None)
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"-config: no such file: {config_file}")
    try:
        return load_role(model, given, config_file)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc, model, given, config_file)) from None
    except SettingsError as exc:
        raise UsageError(f"{config_file}: {exc.__cause__ or exc}") from None
    except ValueError as exc:  # e.g. a TOML syntax error
        raise UsageError(str(exc)) from None


def describe_validation_error(exc: ValidationError, model: type[BaseSettings], given: dict[str, Any],
                              config_file: Path | None) -> str:
    """One line: where the first bad value came from (flag, variable, file key) and why."""
    error = exc.errors()[0]
    message = error_text(error)
    loc = [str(part) for part in error["loc"]]
    if not loc:  # a model-level check; its message names the flags
        return message
    name = loc[0]
    env_prefix = str(model.model_config.get("env_prefix", ""))
    env_name = f"{env_prefix}{name}".upper()
    if error["type"] == "extra_forbidden":
        where = f"{config_file}: [{getattr(model, 'toml_table', '')}]" if config_file else "settings"
        return f"{where}: unknown key {name!r}"
    if name in given:
        source = f"-{flag_name(name)} {given[name]!r}"
    elif env_name in os.environ:
        source = f"{env_name}={os.environ[env_name]!r}"
    elif config_file is not None:
        source = f"{config_file}: {getattr(model, 'toml_table', '')}.{'.'.join(loc)}"
    else:
        source = f"-{flag_name(name)}"
    return f"invalid {source}: {message}"


def error_text(error: Any) -> str:
    """Why a value was refused: a validator's own exception as it wrote it, else pydantic's message."""
    raised = error.get("ctx", {}).get("error")
    return str(raised) if isinstance(raised, Exception) else str(error["msg"])
