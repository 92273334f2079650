"""The `status --json` schema (node/status_schema.py): docs/operations.md lists exactly its keys,
every object in it requires every key it names and allows no other, and counters are snake_case."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from logstream.node.cluster_status import unreachable
from logstream.node.status_schema import CLUSTER, MEDIATOR, snake_case

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def key_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key of `schema` as docs/operations.md writes it: `a.b`, `a[].b` inside lists."""
    for variant in schema.get("oneOf", [schema]):
        for name, sub in variant.get("properties", {}).items():
            path = f"{prefix}{name}"
            yield path
            items = sub.get("items")
            if isinstance(items, dict) and items is not MEDIATOR and "properties" in items:
                yield from key_paths(items, f"{path}[].")
            elif items is None and sub is not MEDIATOR:
                yield from key_paths(sub, f"{path}.")


def documented_keys(section: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8").split("## `logstream status --json`")[1]
    table = text.split(section)[1].split("\n\n")[1]
    return re.findall(r"^\| `([^`]+)` \|", table, re.M)


def test_docs_list_exactly_the_schema_s_keys() -> None:
    assert documented_keys("`status FILE --json` (the whole object") == list(key_paths(CLUSTER))
    assert documented_keys("A mediator object") == list(key_paths(MEDIATOR))


def _objects(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _objects(value)


def test_every_object_requires_all_its_keys_and_only_snake_case_ones() -> None:
    for obj in _objects(CLUSTER):
        assert sorted(obj["required"]) == sorted(obj["properties"]) and obj["additionalProperties"] is False
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in obj["properties"])


@pytest.mark.parametrize(("name", "snake"), [("requests_Log", "requests_log"), ("requests_LogBatch", "requests_log_batch"),
                                             ("requests_LogStream", "requests_log_stream"), ("keys_owned", "keys_owned")])
def test_counter_names_become_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake == snake_case(snake)


def test_an_unreachable_mediator_has_every_key() -> None:
    jsonschema.validate(unreachable("127.0.0.1:1", "refused", "m1"), MEDIATOR)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in unreachable("127.0.0.1:1", "x").items() if k != "mediator_id"}, MEDIATOR)
