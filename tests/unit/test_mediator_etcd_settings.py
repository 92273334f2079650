"""The mediator's etcd-mode settings: -etcd, -cluster, -reuse-port (only a stateless router may share its port)."""

from __future__ import annotations

import pytest

from logstream.config.flags import UsageError, load_settings
from logstream.config.settings import MediatorSettings


def test_reuse_port_needs_etcd_mode_one_line() -> None:
    with pytest.raises(UsageError) as refused:
        load_settings(MediatorSettings, ["-reuse-port"], "test", "")
    assert "-reuse-port needs -etcd" in str(refused.value) and "\n" not in str(refused.value)
    settings = load_settings(MediatorSettings, ["-reuse-port", "-etcd", "127.0.0.1:2379", "-cluster", "c1"], "test", "")
    assert settings.reuse_port and settings.etcd == ["127.0.0.1:2379"] and settings.cluster == "c1"
