"""`logstream certs`: the CA and leaf certificates verify, carry the right SANs and usages, and files are never overwritten silently."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from logstream.commands import certs
from logstream.commands import main as cli
from logstream.config.flags import UsageError


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_a_leaf_verifies_against_its_ca_and_not_another() -> None:
    ca, other = certs.make_ca(), certs.make_ca("other")
    leaf = certs.make_cert(ca, ["localhost", "127.0.0.1", "::1"])
    leaf.cert.verify_directly_issued_by(ca.cert)
    with pytest.raises(ValueError):
        leaf.cert.verify_directly_issued_by(other.cert)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_sans_split_into_dns_names_and_ip_addresses() -> None:
    leaf = certs.make_cert(certs.make_ca(), ["localhost", "127.0.0.1", "[::1]", "node-1.example.org"])
    assert _sans(leaf.cert) == ({"localhost", "node-1.example.org"}, {"127.0.0.1", "::1"})


def test_key_usages_follow_the_role() -> None:
    ca = certs.make_ca()
    assert _usages(certs.make_cert(ca, ["a"]).cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert _usages(certs.make_cert(ca, [], server=False).cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_validity_follows_days() -> None:
    leaf = certs.make_cert(certs.make_ca(days=10), ["a"], days=3)
    assert (leaf.cert.not_valid_after_utc - leaf.cert.not_valid_before_utc).days == 3


@pytest.mark.parametrize("bad", ["", "bad host", "a..b", "-x.example", "x" * 300])
def test_bad_host_names_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="--hosts: not a host name or IP address"):
        certs.subject_alt_names([bad])


def test_default_hosts_cover_loopback() -> None:
    assert {"127.0.0.1", "::1", "localhost"} <= set(certs.default_hosts())


def test_the_command_writes_the_set_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert cli.main(["certs", "-out", str(out), "--hosts", "127.0.0.1,node1", "-days", "30"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(certs.BUNDLE_FILES)
    node = x509.load_pem_x509_certificate((out / "node.crt").read_bytes())
    node.verify_directly_issued_by(x509.load_pem_x509_certificate((out / "ca.crt").read_bytes()))
    assert _sans(node) == ({"node1"}, {"127.0.0.1"})
    assert stat.S_IMODE((out / "node.key").stat().st_mode) == 0o600
    before = (out / "ca.crt").read_bytes()
    capsys.readouterr()

    assert cli.main(["certs", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists (use --force to overwrite)" in err
    assert (out / "ca.crt").read_bytes() == before

    assert cli.main(["certs", "--out", str(out), "--force"]) == 0
    assert (out / "ca.crt").read_bytes() != before


def test_the_command_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["certs", "--out", str(tmp_path), "--days", "0"]) == 2
    assert cli.main(["certs", "--out", str(tmp_path), "--hosts", "a b"]) == 2
    assert cli.main(["certs", "--out", str(tmp_path), "--dys", "3"]) == 2
    assert cli.main(["certs", "-out", str(tmp_path), "-da", "3"]) == 2  # no abbreviations
    assert list(tmp_path.iterdir()) == []
