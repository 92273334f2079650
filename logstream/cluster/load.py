"""Loading a cluster file: one precedence, and every problem named by where its value came from.

Precedence, declared once in `cluster_sources` (first wins): short flags > `--set section.key=value`
> environment (`LOGSTREAM_SECTION__KEY`) > the TOML file > defaults. Every mistake comes back as one
line naming the source of the value and its key path, e.g. `configs/x.toml: streamers.size: not a size: 'abc'`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import InitSettingsSource, PydanticBaseSettingsSource, SettingsError

from logstream.config.flags import error_text
from logstream.config.settings import SettingsConflict, environment_source, merge_values
from logstream.cluster.checks import Problem, cluster_problems, conflict_problem, node_problems, toml_shape_problems
from logstream.cluster.schema import ENV_DELIMITER, ENV_PREFIX, ClusterConfig, ConfigError

Origins = Mapping[tuple[str, ...], str]

# The short options of `logstream run` / `config`, by the key each sets (the rest are `--set`).
SHORT_FLAGS: dict[tuple[str, ...], str] = {("streamers", "count"): "--streamers", ("cluster", "run_dir"): "--run-dir", ("streamers", "path"): "--path"}
# pydantic's error types whose message does not show the refused value.
_SHOW_INPUT = {"int_parsing", "bool_parsing", "float_parsing", "literal_error", "string_pattern_mismatch",
               "greater_than_equal", "less_than_equal", "int_from_float"}


# The arrays of per-node tables (`[[streamer]]`, `[[mediators]]`) that `--set TABLE.NAME.KEY=VALUE` patches.
NODE_TABLES = ("streamer", "mediators")


@dataclass
class Sets:
    """What `--set` gives: section values; per-node values (`streamer.NAME.KEY`,
    `mediators.NAME.KEY`), which patch the `[[streamer]]` / `[[mediators]]` tables of the winning
    source rather than replace them; where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {t: {} for t in NODE_TABLES})
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def streamers(self) -> dict[str, dict[str, Any]]:
        return self.nodes["streamer"]


def parse_sets(items: Sequence[str]) -> Sets:
    """`["streamers.count=5", "streamer.s2.size=10MB"]` -> values and where each came from."""
    sets = Sets()
    values, origins = sets.values, sets.origins
    for item in items:
        key, sep, value = item.partition("=")
        parts = tuple(part.strip() for part in key.strip().split("."))
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError([f"--set {item!r}: expected SECTION.KEY=VALUE (e.g. streamers.count=5)"])
        if parts[0] in NODE_TABLES:
            if len(parts) != 3:
                raise ConfigError([f"--set {item!r}: per-node keys are {parts[0]}.NAME.KEY=VALUE (e.g. "
                                   f"{'streamer.s2.size=10MB' if parts[0] == 'streamer' else 'mediators.m2.port=8300'})"])
            sets.nodes[parts[0]].setdefault(parts[1], {})[parts[2]] = value
        else:
            target = values
            for part in parts[:-1]:
                existing = target.setdefault(part, {})
                if not isinstance(existing, dict):
                    raise ConfigError([f"--set {item!r}: {'.'.join(parts[:-1])} is not a section"])
                target = existing
            target[parts[-1]] = value
        origins[parts] = f"--set {key.strip()}={value}"
    return sets


def patch_streamers(merged: dict[str, Any], sets: Sets) -> dict[tuple[str, ...], str]:
    """Apply `--set streamer.NAME.KEY` (and `mediators.NAME.KEY`) to the table named NAME (added
    when none is); where each value came from, by its position in the list (as validation errors name it)."""
    origins: dict[tuple[str, ...], str] = {}
    for kind in NODE_TABLES:
        tables = [dict(t) if isinstance(t, Mapping) else t for t in merged.get(kind) or []]
        for name, values in sets.nodes[kind].items():
            position = next((i for i, t in enumerate(tables) if isinstance(t, dict) and t.get("name") == name), None)
            if position is None:
                position = len(tables)
                tables.append({"name": name})
            tables[position].update(values)
            for key in values:
                origins[(kind, str(position), key)] = sets.origins[(kind, name, key)]
        if tables:
            merged[kind] = tables
    return origins


def _nested(parts: tuple[str, ...], value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _toml_origins(data: Mapping[str, Any], file: Path, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    origins: dict[tuple[str, ...], str] = {}
    for key, value in data.items():
        path = (*prefix, str(key))
        origins[path] = str(file)
        if isinstance(value, Mapping):
            origins.update(_toml_origins(value, file, path))
        elif isinstance(value, list):
            for position, item in enumerate(value):
                if isinstance(item, Mapping):
                    origins.update(_toml_origins(item, file, (*path, str(position))))
    return origins


def _env_origins(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    origins: dict[tuple[str, ...], str] = {}
    fields = set(ClusterConfig.model_fields)
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        parts = tuple(part.lower() for part in upper[len(ENV_PREFIX):].split(ENV_DELIMITER))
        if parts[0] in fields:
            origins[parts] = name
    return origins


def show_path(parts: Sequence[str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _origin_for(parts: tuple[str, ...], origin_maps: Sequence[Origins]) -> str | None:
    """The highest-precedence source that holds `parts` (or a prefix of it)."""
    for origins in origin_maps:
        for length in range(len(parts), 0, -1):
            if parts[:length] in origins:
                return origins[parts[:length]]
    return None


def render(problem: Problem, origin_maps: Sequence[Origins], file: Path | None) -> str:
    """One line: where the value came from (flag, --set, variable, file), its key path, what is wrong."""
    origin = _origin_for(problem.key, origin_maps) or (str(file) if file else None)
    text = problem.text if problem.names_keys else f"{show_path(problem.key)}: {problem.text}"
    return f"{origin}: {text}" if origin else text


def validation_problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        parts = tuple(str(part) for part in error["loc"])
        raised = error.get("ctx", {}).get("error")
        if isinstance(raised, SettingsConflict):
            problems.append(conflict_problem(parts, raised))
            continue
        message = error_text(error)
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            parent = _section_model(parts[:-1])
            if parent is not None:
                message += f" (known: {', '.join(parent.model_fields)})"
        elif error["type"] in _SHOW_INPUT:
            message += f" (got {error.get('input')!r})"
        problems.append(Problem(parts, message))
    return problems


def _section_model(parts: Sequence[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = ClusterConfig
    for part in parts:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (write a starter one with `logstream init {path}`)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a folder, not a cluster file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def cluster_sources(flags: Mapping[str, Any], sets: Mapping[str, Any], environ: Mapping[str, str],
                    file_data: Mapping[str, Any] | None) -> tuple[PydanticBaseSettingsSource, ...]:
    """The one precedence of a cluster's values, first wins: short flags > --set > environment > file."""
    sources: list[PydanticBaseSettingsSource] = [InitSettingsSource(ClusterConfig, dict(flags)),
                                                 InitSettingsSource(ClusterConfig, dict(sets)),
                                                 environment_source(ClusterConfig, environ)]
    if file_data is not None:
        sources.append(InitSettingsSource(ClusterConfig, dict(file_data)))
    return tuple(sources)


def load_cluster(
    file: str | Path | None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterConfig:
    """Read and check a cluster: defaults < `file` < environment < `sets` < `flags`; every node it
    plans is checked by building its role's settings, so a value a node would refuse is refused here.

    `flags` are short options already turned into key paths, e.g. {"streamers.count": 5}.
    Raises ConfigError listing every problem, each naming its source and key path.
    """
    path = Path(file) if file is not None else None
    toml_data = _read_toml(path) if path is not None else None
    parsed = parse_sets(sets)
    flag_values: dict[str, Any] = {}
    flag_origins: dict[tuple[str, ...], str] = {}
    for dotted, value in (flags or {}).items():
        parts = tuple(dotted.split("."))
        flag_values = merge_values([InitSettingsSource(ClusterConfig, _nested(parts, value)),
                                    InitSettingsSource(ClusterConfig, flag_values)])
        flag_origins[parts] = f"{SHORT_FLAGS.get(parts, dotted)} {value}"
    env = dict(os.environ if environ is None else environ)
    origin_maps: list[Origins] = [flag_origins, parsed.origins, _env_origins(env)]
    if path is not None and toml_data is not None:
        origin_maps.append(_toml_origins(toml_data, path))
    # The file's own mistakes (a string for a number, [streamer] for [[streamer]]), named by its key
    # paths whatever a higher source sets, and reported beside the other problems.
    shape = [] if path is None or toml_data is None else toml_shape_problems(toml_data)
    shown = [] if path is None or toml_data is None else [
        render(p, [_toml_origins(toml_data, path)], path) for p in shape]
    try:
        merged = merge_values(cluster_sources(flag_values, parsed.values, env, toml_data))
        origin_maps.insert(1, patch_streamers(merged, parsed))
        config = ClusterConfig.model_validate(merged)
    except ValidationError as exc:
        said = {p.key for p in shape}
        others = [p for p in validation_problems(exc) if not any(p.key[:len(k)] == k for k in said)]
        raise ConfigError(shown + [render(p, origin_maps, path) for p in others]) from None
    except SettingsError as exc:  # e.g. LOGSTREAM_MEDIATOR='...' that is not valid JSON
        detail = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError([f"{exc}{detail}"]) from None
    if shown:
        raise ConfigError(shown)
    problems = cluster_problems(config) or node_problems(config)
    if problems:
        raise ConfigError([render(p, origin_maps, path) for p in problems])
    return config
