"""Every place that takes a host:port (send's -target, status's -mediator, settings' Address fields,
the mediator's Register) applies the one rule of `node/address.py`."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from logstream.commands import status
from logstream.commands.send import parse_target
from logstream.config.flags import UsageError
from logstream.config.types import Address
from logstream.mediator.service import BadInput, check_address
from logstream.node.address import AddressError, parse_address
from logstream.node.cluster_status import unreachable

SAMPLES = ["127.0.0.1:8000", "[::1]:8000", "logs.example.org:443", " h:1 ", "::1:8000", "[::1]", "h:0",
           "h:65536", "h:8o", "h:²", "[name]:80", "nohost", ":80"]


def _accepts(check: object, text: str, errors: tuple[type[Exception], ...]) -> bool:
    try:
        check(text)  # type: ignore[operator]
    except errors:
        return False
    return True


def _status_accepts(text: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    asked: list[str] = []

    def fetch(target: str, *_: object) -> dict[str, object]:  # no network: only the parsed address matters
        asked.append(target)
        return unreachable(target, None)

    monkeypatch.setattr(status, "fetch_status", fetch)
    try:
        status.main(["-mediator", text, "--json"])
    except UsageError:
        return False
    assert asked == [parse_address(text)]
    return True


@pytest.mark.parametrize("text", SAMPLES)
def test_all_users_agree_with_the_one_parser(text: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    expected = _accepts(parse_address, text, (AddressError,))
    assert _accepts(parse_target, text, (UsageError,)) == expected
    assert _accepts(TypeAdapter(Address).validate_python, text, (ValidationError,)) == expected
    assert _accepts(check_address, text.strip(), (BadInput,)) == _accepts(parse_address, text.strip(), (AddressError,))
    assert _status_accepts(text, monkeypatch) == expected
