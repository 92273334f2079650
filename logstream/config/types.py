"""Pydantic field types for sizes, durations and host:port addresses."""

from __future__ import annotations

from typing import Annotated, Any

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
