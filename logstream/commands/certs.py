"""`logstream certs`: a development CA plus node and client certificates, made with `cryptography`."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from logstream.config.goflags import GoFlagParser, UsageError

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 825  # the longest validity that common TLS clients accept for a leaf certificate
_HOSTNAME_RE = re.compile(r"^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")

# name in the output folder -> what it is
BUNDLE_FILES: tuple[str, ...] = ("ca.crt", "ca.key", "node.crt", "node.key", "client.crt", "client.key")


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "logstream"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: small, fast and accepted by every gRPC TLS stack.
    return ec.generate_private_key(ec.SECP256R1())


def subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """IP literals become IP SANs, everything else DNS SANs; a bad name raises UsageError."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        text = host.strip().strip("[]")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        if not text or len(text) > 253 or not _HOSTNAME_RE.match(text):
            raise UsageError(f"--hosts: not a host name or IP address: {host!r}")
        names.append(x509.DNSName(text))
    return names


def make_ca(common_name: str = "logstream development CA", days: int = DEFAULT_DAYS,
            now: dt.datetime | None = None) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    start = (now or _now()) - dt.timedelta(minutes=5)  # tolerate small clock skew between hosts
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_cert(ca: Issued, hosts: Sequence[str], common_name: str = "logstream node", days: int = DEFAULT_DAYS,
              server: bool = True, client: bool = True, now: dt.datetime | None = None) -> Issued:
    """A leaf certificate signed by `ca`, valid for `hosts` (SANs) and the chosen key usages."""
    if not (server or client):
        raise ValueError("a certificate must be good for server or client use")
    key = _new_key()
    start = (now or _now()) - dt.timedelta(minutes=5)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
                          content_commitment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def default_hosts() -> list[str]:
    """127.0.0.1, ::1, localhost and this machine's host name."""
    hosts = ["127.0.0.1", "::1", "localhost"]
    hostname = socket.gethostname()
    if hostname and hostname not in hosts and _HOSTNAME_RE.match(hostname):
        hosts.append(hostname)
    return hosts


def make_bundle(hosts: Sequence[str], days: int = DEFAULT_DAYS) -> dict[str, bytes]:
    """File name -> PEM bytes for the whole development set (see BUNDLE_FILES)."""
    ca = make_ca(days=days)
    node = make_cert(ca, hosts, common_name="logstream node", days=days, server=True, client=True)
    client = make_cert(ca, [], common_name="logstream client", days=days, server=False, client=True)
    return {
        "ca.crt": ca.cert_pem, "ca.key": ca.key_pem,
        "node.crt": node.cert_pem, "node.key": node.key_pem,
        "client.crt": client.cert_pem, "client.key": client.key_pem,
    }


def write_pem(path: Path, data: bytes, force: bool) -> None:
    """Write `data`; private keys are readable by their owner only. Refuses to overwrite unless `force`."""
    mode = 0o600 if path.suffix == ".key" else 0o644
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)


def write_bundle(out: Path, hosts: Sequence[str], days: int = DEFAULT_DAYS, force: bool = False) -> list[Path]:
    """Make and write the development set into `out`; UsageError if a file exists and not `force`."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a directory")
    targets = [out / name for name in BUNDLE_FILES]
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} already exists (use --force to overwrite)")
    files = make_bundle(hosts, days)
    out.mkdir(parents=True, exist_ok=True)
    for path in targets:
        write_pem(path, files[path.name], force)
    return targets


def _positive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= 36500:
        raise argparse.ArgumentTypeError(f"days must be between 1 and 36500, not {days}")
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream certs", allow_abbrev=False,
                     description="Make a development CA, a node certificate (server and client use) and a "
                                 "client certificate: " + ", ".join(BUNDLE_FILES) + ".")
    parser.add_argument("-out", "--out", type=Path, default=Path("certs"), help="output folder (default: certs)")
    parser.add_argument("-hosts", "--hosts", default=None,
                        help="comma-separated names and IPs the node certificate is valid for "
                             "(default: 127.0.0.1,::1,localhost,<this host's name>)")
    parser.add_argument("-days", "--days", type=_positive_days, default=DEFAULT_DAYS,
                        help=f"validity in days (default: {DEFAULT_DAYS})")
    parser.add_argument("-force", "--force", action="store_true", help="overwrite existing files")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    hosts = default_hosts() if args.hosts is None else [h for h in args.hosts.split(",") if h.strip()]
    if not hosts:
        raise UsageError("--hosts: give at least one host name or IP address")
    subject_alt_names(hosts)  # reject bad names before writing anything
    written = write_bundle(args.out, hosts, args.days, args.force)
    print(f"wrote {', '.join(str(p) for p in written)} (node valid for {','.join(hosts)}; {args.days} days)",
          file=sys.stderr)
    return 0
