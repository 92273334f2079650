"""Start-up helpers: the advertised address, the registration backoff, the root check."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from logstream.config.flags import UsageError
from logstream.config.settings import StreamerSettings
from logstream.streamer.main import check_port_free, prepare_root
from logstream.streamer.registration import backoff_delays
from logstream.streamer.server import advertised_address


@pytest.mark.parametrize(("fields", "expected"), [
    ({"host": "127.0.0.1"}, "127.0.0.1:9000"),
    ({"host": "0.0.0.0", "mediator": "127.0.0.1:8000"}, "127.0.0.1:9000"),
    ({"host": "::", "mediator": "localhost:8000"}, "127.0.0.1:9000"),
    ({"host": "0.0.0.0", "mediator": "10.1.2.3:8000"}, f"{socket.gethostname()}:9000"),
    ({"host": "::1"}, "[::1]:9000"),
    ({"host": "0.0.0.0", "advertise": "logs.example:7000"}, "logs.example:7000"),
])
def test_advertised_address(fields: dict[str, str], expected: str) -> None:
    assert advertised_address(StreamerSettings(**fields), 9000) == expected  # type: ignore[arg-type]


def test_backoff_doubles_up_to_a_cap_with_some_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(0.2, 5.0), 12))
    assert 0.2 <= delays[0] <= 0.24 and 0.4 <= delays[1] <= 0.48
    assert all(5.0 <= d <= 6.0 for d in delays[6:])


def test_root_checks(tmp_path: Path) -> None:
    prepare_root(tmp_path / "new" / "root")
    assert (tmp_path / "new" / "root").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        prepare_root(tmp_path / "file")
    with pytest.raises(UsageError, match="not a writable folder"):
        prepare_root(tmp_path / "file" / "below")


def test_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UsageError, match="cannot listen"):
            check_port_free("127.0.0.1", busy.getsockname()[1])
    check_port_free("127.0.0.1", 0)
