"""Pydantic field types for sizes, durations and host:port addresses."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from logstream.config.units import UNLIMITED, format_duration, format_size, parse_duration, parse_size
from logstream.node.address import parse_address, parse_listen_address


# Bytes as an int (-1 = unlimited); accepts "1MB", "1.5KiB", "-1B", 4096.
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]


def _finite(n_bytes: int) -> int:
    if n_bytes == UNLIMITED:
        raise ValueError("must be a finite size (-1B, unlimited, is not allowed here)")
    return n_bytes


# A Size that cannot be unlimited (-1B is refused).
FiniteSize = Annotated[Size, AfterValidator(_finite)]
# Seconds as a float; accepts "5s", "250ms", "1m30s", 2.5.
Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
# Seconds, where 0 means "off" (a plain Duration must be positive); accepts "0", "0s", "250ms".
ZeroOrDuration = Annotated[
    float,
    BeforeValidator(lambda value: 0.0 if str(value).strip().lower() in ("0", "0s", "0ms", "0.0") else parse_duration(value)),
    PlainSerializer(lambda seconds: "0s" if seconds == 0 else format_duration(seconds), return_type=str),
]
# "host:port" with a port in 1..65535 (IPv6 in brackets); AddressError is a ValueError.
Address = Annotated[str, BeforeValidator(parse_address)]
# An address to listen on: as Address, and port 0 means any free port.
ListenAddress = Annotated[str, BeforeValidator(parse_listen_address)]


def parse_address_list(value: object) -> list[str]:
    """A list of host:port from a comma list ("a:1,b:2", as a flag or variable gives it) or a list
    (as TOML gives it); empty is refused."""
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    addresses = [parse_address(item) for item in items if str(item).strip()]
    if not addresses:
        raise ValueError("must name at least one host:port")
    return addresses


# Several host:port, written as a comma list (NoDecode: a variable holds "a:1,b:2", not JSON).
AddressList = Annotated[list[str], NoDecode, BeforeValidator(parse_address_list),
                        PlainSerializer(",".join, return_type=str)]


def show_value(field: FieldInfo, value: Any) -> str:
    """`value` of `field` as a flag or a person writes it: sizes and durations in their units (known
    from the field's type and its serializer, not its name), booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(TypeAdapter(field_type(field)).dump_python(value, mode="json"))


def field_type(field: FieldInfo) -> Any:
    """The field's whole type, with the validators and serializers pydantic keeps beside it."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def _plain_kind(annotation: Any, metadata: typing.Sequence[Any] = ()) -> Literal["bool", "int", "float"] | None:
    """bool, int or float for a field a TOML file must give as that type; None for text, paths, and
    values a validator parses from text (sizes, durations, addresses)."""
    if any(isinstance(item, BeforeValidator) for item in metadata):
        return None
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extra = typing.get_args(annotation)
        return _plain_kind(base, [*metadata, *extra])
    if origin in (typing.Union, types.UnionType):
        kinds = {_plain_kind(arg, metadata) for arg in typing.get_args(annotation) if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return {bool: "bool", int: "int", float: "float"}.get(annotation)  # type: ignore[return-value]


def toml_value_problem(field: FieldInfo, value: Any) -> str | None:
    """What is wrong with `value`, as a TOML file gives it, for `field`: a number or a boolean written
    as a string (`port = "8000"`, `console = "yes"`) is a mistake there, though a flag, a variable or
    `--set` can only give text (pydantic's lax mode would quietly convert it)."""
    kind = _plain_kind(field.annotation, field.metadata)
    if kind is None or value is None:
        return None
    if kind == "bool":
        ok = isinstance(value, bool)
        wanted = "true or false (a TOML boolean)"
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (kind == "float" or isinstance(value, int))
        wanted = "a whole number" if kind == "int" else "a number"
    if ok:
        return None
    shown = f"the string {value!r}" if isinstance(value, str) else f"{value!r}"
    return f"expected {wanted}, not {shown}"
