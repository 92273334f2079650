"""A small YAML writer for manifests: block mappings and sequences, every string double-quoted,
so that no value is ever read back as a number, a boolean or null ("on", "0700", "1e3"). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# Keys written bare; anything else (and YAML 1.1's boolean words) is quoted like a value.
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


# Characters a YAML stream may hold as they are (its c-printable set) less those a reader treats as
# line breaks or a byte-order mark; every other one is written as an escape.
_AS_IS = re.compile("[\t\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def quote(text: str) -> str:
    """`text` as a YAML double-quoted scalar."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif _AS_IS.match(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML: {value!r}")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings: {key!r}")
    return key if _PLAIN_KEY.match(key) and key.lower() not in _RESERVED else quote(key)


def _is_block(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple)) and len(value) > 0


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        out = []
        for key, item in value.items():
            if _is_block(item):
                out.append(f"{pad}{_key(key)}:")
                out += _lines(item, indent + 2)
            else:
                out.append(f"{pad}{_key(key)}: {_empty_or_scalar(item)}")
        return out
    if isinstance(value, (list, tuple)):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if _is_block(item):
                # The item's block one level in, its first line's indent replaced by "- ".
                inner = _lines(item, indent + 2)
                out.append(f"{pad}- {inner[0][indent + 2:]}")
                out += inner[1:]
            else:
                out.append(f"{pad}- {_empty_or_scalar(item)}")
        return out
    return [pad + _scalar(value)]


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _scalar(value)


def dump(value: Any) -> str:
    """One YAML document for `value` (dicts, lists, str, int, bool, None)."""
    return "\n".join(_lines(value, 0)) + "\n"


def dump_all(documents: Sequence[Any]) -> str:
    """Several documents in one stream, separated by `---`."""
    return "".join(f"---\n{dump(document)}" for document in documents)
