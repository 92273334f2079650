"""Sizes that must be finite are refused as -1B ("unlimited") by the roles' flags with a UsageError:
the mediator's -batch-bytes and -max-line, the streamer's -max-line; a finite value is taken as given."""

from __future__ import annotations

import pytest

from logstream.config.flags import UsageError, load_settings
from logstream.config.settings import MediatorSettings, RoleSettings, StreamerSettings

CASES = [(MediatorSettings, "-batch-bytes", "batch_bytes"), (MediatorSettings, "-max-line", "max_line"),
         (StreamerSettings, "-max-line", "max_line")]


@pytest.mark.parametrize(("model", "flag", "field"), CASES)
def test_unlimited_is_refused_where_a_size_must_be_finite(model: type[RoleSettings], flag: str, field: str) -> None:
    with pytest.raises(UsageError):
        load_settings(model, [flag, "-1B"], "logstream test", "test")
    assert getattr(load_settings(model, [flag, "1KB"], "logstream test", "test"), field) == 1000
