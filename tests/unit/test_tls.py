"""TLS credentials against a real grpc.aio server on 127.0.0.1:0: plaintext, server-only and mutual."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import pytest_asyncio

from logstream.node import tls
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.config.flags import UsageError
from logstream.errors import UserError
from logstream.config.settings import StreamerSettings
from logstream.node.net import SERVER_OPTIONS

if TYPE_CHECKING:
    from tests.conftest import TlsFiles


class Pinger(pb_grpc.PingerServicer):
    async def Ping(self, request: pb.PingRequest, context: grpc.aio.ServicerContext) -> pb.PingResponse:
        return pb.PingResponse(res=request.a * request.b)


async def _serve(creds: grpc.ServerCredentials | None) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_PingerServicer_to_server(Pinger(), server)  # type: ignore[no-untyped-call]
    port = tls.add_port(server, "127.0.0.1:0", creds)
    await server.start()
    return server, port


async def _ping(port: int, creds: grpc.ChannelCredentials | None, host: str = "127.0.0.1") -> int:
    async with tls.secure_or_insecure_channel(f"{host}:{port}", creds) as channel:
        stub = pb_grpc.PingerStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Ping(pb.PingRequest(a=6, b=7), timeout=5)
        return int(reply.res)


async def _refused(port: int, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _ping(port, creds)
    return info.value.code()


@pytest_asyncio.fixture
async def plaintext_server() -> AsyncIterator[int]:
    server, port = await _serve(None)
    yield port
    await server.stop(None)


def _settings(**files: Path) -> StreamerSettings:
    return StreamerSettings.model_validate(files)


@pytest_asyncio.fixture
async def server_only(tls_files: TlsFiles) -> AsyncIterator[int]:
    settings = _settings(crt=tls_files.node_crt, pk=tls_files.node_key)
    assert settings.tls_mode == "server"
    server, port = await _serve(tls.server_credentials(settings))
    yield port
    await server.stop(None)


@pytest_asyncio.fixture
async def mutual(tls_files: TlsFiles) -> AsyncIterator[int]:
    settings = _settings(ca=tls_files.ca, crt=tls_files.node_crt, pk=tls_files.node_key)
    assert settings.tls_mode == "mutual"
    server, port = await _serve(tls.server_credentials(settings))
    yield port
    await server.stop(None)


def test_plaintext_settings_give_no_credentials() -> None:
    settings = _settings()
    assert tls.server_credentials(settings) is None
    assert tls.node_channel_credentials(settings) is None
    assert tls.channel_credentials(None, None, None) is None


@pytest.mark.asyncio
async def test_plaintext_round_trip(plaintext_server: int) -> None:
    assert await _ping(plaintext_server, None) == 42


@pytest.mark.asyncio
async def test_server_only_accepts_a_client_that_trusts_the_ca(server_only: int, tls_files: TlsFiles) -> None:
    assert await _ping(server_only, tls.channel_credentials(tls_files.ca, None, None)) == 42
    # "localhost" is a SAN too
    assert await _ping(server_only, tls.channel_credentials(tls_files.ca, None, None), host="localhost") == 42


@pytest.mark.asyncio
async def test_server_only_tolerates_a_client_certificate(server_only: int, tls_files: TlsFiles) -> None:
    creds = tls.channel_credentials(tls_files.ca, tls_files.client_crt, tls_files.client_key)
    assert await _ping(server_only, creds) == 42


@pytest.mark.asyncio
async def test_server_only_refuses_clients_without_the_ca(server_only: int, tls_files: TlsFiles) -> None:
    assert await _refused(server_only, tls.channel_credentials(tls_files.other_ca, None, None)) == grpc.StatusCode.UNAVAILABLE
    assert await _refused(server_only, None) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_mutual_accepts_client_and_node_certificates(mutual: int, tls_files: TlsFiles) -> None:
    client = tls.channel_credentials(tls_files.ca, tls_files.client_crt, tls_files.client_key)
    assert await _ping(mutual, client) == 42
    node = _settings(ca=tls_files.ca, crt=tls_files.node_crt, pk=tls_files.node_key)
    assert await _ping(mutual, tls.node_channel_credentials(node)) == 42


@pytest.mark.asyncio
async def test_mutual_refuses_a_client_without_a_certificate(mutual: int, tls_files: TlsFiles) -> None:
    assert await _refused(mutual, tls.channel_credentials(tls_files.ca, None, None)) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_mutual_refuses_a_certificate_from_another_ca(mutual: int, tls_files: TlsFiles) -> None:
    creds = tls.channel_credentials(tls_files.ca, tls_files.other_crt, tls_files.other_key)
    assert await _refused(mutual, creds) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_a_node_in_server_mode_calls_a_server_only_peer(server_only: int, tls_files: TlsFiles) -> None:
    node = _settings(crt=tls_files.node_crt, pk=tls_files.node_key)
    # No -ca: the node would verify with the system roots, which do not know our test CA.
    assert await _refused(server_only, tls.node_channel_credentials(node)) == grpc.StatusCode.UNAVAILABLE


def test_a_file_that_is_not_a_certificate_is_named(tmp_path: Path, tls_files: TlsFiles) -> None:
    bad = tmp_path / "x.crt"
    bad.write_text("hello\n")
    with pytest.raises(tls.CredentialsError, match=r"^-crt .*x\.crt: not a PEM certificate$"):
        tls.server_credentials(_settings(crt=bad, pk=tls_files.node_key))
    with pytest.raises(tls.CredentialsError, match=r"^-ca .*x\.crt: not a PEM certificate$"):
        tls.channel_credentials(bad, None, None)


def test_a_file_that_is_not_a_key_is_named(tls_files: TlsFiles) -> None:
    with pytest.raises(tls.CredentialsError, match=r"^-pk .*node\.crt: not a PEM private key$"):
        tls.channel_credentials(tls_files.ca, tls_files.node_crt, tls_files.node_crt)


def test_a_key_of_another_certificate_is_refused(tls_files: TlsFiles) -> None:
    with pytest.raises(tls.CredentialsError, match="-pk .*client.key: key does not match the certificate in -crt"):
        tls.server_credentials(_settings(crt=tls_files.node_crt, pk=tls_files.client_key))


def test_missing_files_and_half_pairs(tmp_path: Path, tls_files: TlsFiles) -> None:
    with pytest.raises(tls.CredentialsError, match=r"^-ca .*nope\.crt: no such file$"):
        tls.channel_credentials(tmp_path / "nope.crt", None, None)
    with pytest.raises(tls.CredentialsError, match="^-crt needs -pk"):
        tls.channel_credentials(None, tls_files.client_crt, None)


@pytest.mark.asyncio
async def test_add_port_reports_an_address_in_use(plaintext_server: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    try:
        with pytest.raises(tls.ListenError, match=f"^cannot listen on 127.0.0.1:{plaintext_server}"):
            tls.add_port(server, f"127.0.0.1:{plaintext_server}", None)
    finally:
        await server.stop(None)


def test_credential_problems_are_the_library_s_own_errors_not_the_cli_s(tmp_path: Path) -> None:
    # The CLI edge prints every UserError as one line; the library never raises the CLI's UsageError.
    assert issubclass(tls.CredentialsError, UserError) and not issubclass(tls.CredentialsError, UsageError)
    assert issubclass(tls.ListenError, UserError) and not issubclass(tls.ListenError, UsageError)
    with pytest.raises(tls.CredentialsError) as caught:
        tls.channel_credentials(tmp_path / "nope.crt", None, None)
    assert (caught.value.flag, caught.value.path, caught.value.reason) == ("-ca", tmp_path / "nope.crt", "no such file")


# Without `cryptography` (a client-only install) the files are checked by their PEM blocks.

def _without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls._cryptography() is not None  # installed here (the test extra includes the server)
    monkeypatch.setattr(tls, "_cryptography", lambda: None)


@pytest.mark.asyncio
async def test_a_client_without_cryptography_still_speaks_tls(server_only: int, tls_files: TlsFiles,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _without_cryptography(monkeypatch)
    assert await _ping(server_only, tls.channel_credentials(tls_files.ca, None, None)) == 42
    assert await _ping(server_only, tls.channel_credentials(tls_files.ca, tls_files.client_crt,
                                                            tls_files.client_key)) == 42


def test_without_cryptography_files_without_the_right_blocks_are_named(
        tmp_path: Path, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization

    _without_cryptography(monkeypatch)
    bad = tmp_path / "x.crt"
    bad.write_text("hello\n")
    with pytest.raises(tls.CredentialsError, match=r"^-ca .*x\.crt: not a PEM certificate$"):
        tls.channel_credentials(bad, None, None)
    with pytest.raises(tls.CredentialsError, match=r"^-pk .*node\.crt: not a PEM private key$"):
        tls.channel_credentials(tls_files.ca, tls_files.node_crt, tls_files.node_crt)
    key = serialization.load_pem_private_key(tls_files.client_key.read_bytes(), password=None)
    for name, fmt in (("pkcs8", serialization.PrivateFormat.PKCS8),
                      ("openssl", serialization.PrivateFormat.TraditionalOpenSSL)):
        locked = tmp_path / f"locked-{name}.key"
        locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt,
                                             serialization.BestAvailableEncryption(b"secret")))
        with pytest.raises(tls.CredentialsError, match=r"^-pk .*locked.*: private key is encrypted"):
            tls.channel_credentials(tls_files.ca, tls_files.client_crt, locked)


def test_pem_blocks_are_complete_labelled_blocks() -> None:
    data = b"junk\n-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nREVG\n"
    assert tls.pem_blocks(data) == [("CERTIFICATE", b"QUJD\n")]  # the key has no END line
    assert tls.pem_key_problem(data) == "not a PEM private key"
    assert tls.pem_key_problem(b"-----BEGIN EC PRIVATE KEY-----\nQUJD\n-----END EC PRIVATE KEY-----\n") is None
