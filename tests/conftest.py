"""Shared test setup: Hypothesis profiles (dev is quick, ci is thorough) and TLS test files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS tests: a CA, a node certificate (server and client use, valid for
    127.0.0.1, ::1 and localhost), a client certificate, and an unrelated CA with its own cert."""

    ca: Path
    node_crt: Path
    node_key: Path
    client_crt: Path
    client_key: Path
    other_ca: Path
    other_crt: Path
    other_key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    from logstream.certs import make_ca, make_cert

    folder = tmp_path_factory.mktemp("tls")
    hosts = ["127.0.0.1", "::1", "localhost"]
    ca = make_ca("logstream test CA")
    other = make_ca("unrelated test CA")
    issued = {
        "ca.crt": ca.cert_pem,
        "other-ca.crt": other.cert_pem,
    }
    for stem, authority, server in (("node", ca, True), ("client", ca, False), ("other", other, True)):
        cert = make_cert(authority, hosts if server else [], common_name=f"test {stem}", server=server)
        issued[f"{stem}.crt"], issued[f"{stem}.key"] = cert.cert_pem, cert.key_pem
    for name, data in issued.items():
        (folder / name).write_bytes(data)
    return TlsFiles(
        ca=folder / "ca.crt", node_crt=folder / "node.crt", node_key=folder / "node.key",
        client_crt=folder / "client.crt", client_key=folder / "client.key",
        other_ca=folder / "other-ca.crt", other_crt=folder / "other.crt", other_key=folder / "other.key",
    )
