"""Go-style flags of `logstream streamer`: -flag and --flag, -flag=value, values starting with '-',
boolean flags, --help listing every flag, and one-line errors for bad flags and values."""

from __future__ import annotations

import pytest

from logstream.config.flags import UsageError, build_parser, load_settings
from logstream.config.settings import StreamerSettings

ORIGINAL_FLAGS = ("ca", "console", "crt", "mediator", "path", "pk", "port", "pport", "pprof", "size")


def load(argv: list[str]) -> StreamerSettings:
    return load_settings(StreamerSettings, argv, "logstream streamer", "test")


@pytest.mark.parametrize("argv", [["-port", "9001"], ["--port", "9001"], ["-port=9001"], ["--port=9001"]])
def test_single_and_double_dash_both_work(argv: list[str]) -> None:
    assert load(argv).port == 9001


@pytest.mark.parametrize(("text", "size"), [("-1B", -1), ("-1", -1), ("5", 5), ("1KB", 1000), ("1.5KiB", 1536)])
def test_size_values_including_negative_ones(text: str, size: int) -> None:
    assert load(["-size", text]).size == size


def test_boolean_flags_go_style() -> None:
    assert load(["-console"]).console is True
    assert load(["-console=false"]).console is False
    assert load(["-pprof", "-pport", "0"]).pprof is True


def test_help_lists_every_flag_with_its_default() -> None:
    text = build_parser(StreamerSettings, "logstream streamer", "test").format_help()
    for name in (*ORIGINAL_FLAGS, *StreamerSettings.model_fields):
        assert f"-{name.replace('_', '-')}" in text
    assert "default: 1MB" in text and "default: 8080" in text and "default: ../logs" in text


@pytest.mark.parametrize(("argv", "needle"), [
    (["-size", "lots"], "-size"),
    (["-size", "0"], "zero"),
    (["-port", "70000"], "-port"),
    (["-nosuch"], "-nosuch"),  # names the flag (the rest is argparse's wording)
    (["-crt", "/nonexistent.crt"], "-pk"),
    (["-mediator", "nohost"], "host:port"),
    (["-fsync", "sometimes"], "-fsync"),
])
def test_bad_flags_are_one_line_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        load(argv)
    message = str(caught.value)
    assert needle in message and "\n" not in message
