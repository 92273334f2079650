"""Node log lines (node/logs.py): text keeps one event a line; json is one object a line with time,
level, role, node, logger, message, the record's extra fields and its traceback."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest

from logstream.node import logs


def _record(logger: logging.Logger, stream: io.StringIO, log_format: str) -> list[str]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.make_formatter("streamer", "s1", log_format))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("listening on %s:%d", "127.0.0.1", 8080, extra={"port": 8080, "root": Path("/var/log")})
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("write failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_json_lines() -> None:
    lines = _record(logging.getLogger("test.logs.json"), io.StringIO(), "json")
    assert len(lines) == 2  # a traceback does not break an event over lines
    first, second = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert {k: first[k] for k in ("level", "role", "node", "logger", "message", "port", "root")} == {
        "level": "info", "role": "streamer", "node": "s1", "logger": "test.logs.json",
        "message": "listening on 127.0.0.1:8080", "port": 8080, "root": "/var/log"}
    assert second["level"] == "error" and second["message"] == "write failed"
    assert "ValueError: bad\nthing" in second["exception"]
    assert "args" not in first and "msg" not in first and "exc_info" not in first


def test_text_lines_stay_one_event_a_line() -> None:
    lines = _record(logging.getLogger("test.logs.text"), io.StringIO(), "text")
    assert len(lines) == 2
    assert re.fullmatch(r"\S+Z streamer s1 INFO listening on 127\.0\.0\.1:8080", lines[0])
    assert "ValueError: bad | thing" in lines[1]


def test_the_flag_is_checked() -> None:
    from logstream.config.flags import UsageError, load_settings
    from logstream.config.settings import StreamerSettings

    assert load_settings(StreamerSettings, ["-log-format", "json"], "t", "t").log_format == "json"
    with pytest.raises(UsageError, match="log.format"):
        load_settings(StreamerSettings, ["-log-format", "xml"], "t", "t")
