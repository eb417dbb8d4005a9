"""``server.tls`` (certificates, contexts, CLI options) and the router's TLS pool of the lean
client (``rawhttp.RawPool(ssl_context=...)``) against a small asyncio TLS server on loopback."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import pytest

from mictlanx_sync.server import tls as tls_module
from mictlanx_sync.server.router.peer_client import PeerClient
from mictlanx_sync.server.router.peers import PeerEntry
from mictlanx_sync.server.router.rawhttp import PeerTLSError, RawPool
from mictlanx_sync.server.tls import (
    ServerTLS,
    TLSSetupError,
    add_server_tls_arguments,
    make_self_signed,
    peer_ssl_context,
    server_tls_from_args,
)

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerTLS:
    return make_self_signed(tmp_path_factory.mktemp("certificate"), ("127.0.0.1", "localhost", "::1", "peer.example"))


# --- certificates and files ---------------------------------------------------------------------
def test_self_signed_certificate_names_its_hosts_and_keeps_its_key_private(certificate: ServerTLS) -> None:
    assert certificate.keyfile is not None
    assert Path(certificate.keyfile).stat().st_mode & 0o077 == 0
    text = subprocess.run(["openssl", "x509", "-in", certificate.certfile, "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, timeout=10, check=True).stdout
    for name in ("IP Address:127.0.0.1", "DNS:localhost", "IP Address:0:0:0:0:0:0:0:1", "DNS:peer.example"):
        assert name in text
    certificate.check()


def test_without_openssl_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tls_module.shutil, "which", lambda name: None)
    with pytest.raises(TLSSetupError, match="needs the 'openssl' command"):
        make_self_signed(tmp_path)


def test_unusable_certificate_files_are_tls_setup_errors(certificate: ServerTLS, tmp_path: Path) -> None:
    with pytest.raises(TLSSetupError, match="not found"):
        ServerTLS(str(tmp_path / "missing.pem")).check()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(TLSSetupError, match="cannot load"):
        ServerTLS(str(garbage), certificate.keyfile).check()
    assert issubclass(TLSSetupError, ValueError)


def test_peer_context_verifies_host_names_and_rejects_a_bad_ca_file(certificate: ServerTLS, tmp_path: Path) -> None:
    system = peer_ssl_context()
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
    assert peer_ssl_context(certificate.certfile).verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(TLSSetupError, match="not found"):
        peer_ssl_context(str(tmp_path / "missing.pem"))


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_tls_arguments(parser, "MICTLANX_TEST")
    return parser.parse_args(list(argv))


def test_server_options_and_their_environment(certificate: ServerTLS, monkeypatch: pytest.MonkeyPatch) -> None:
    assert server_tls_from_args(_parse(), "test") is None
    assert server_tls_from_args(_parse("--ssl-certfile", certificate.certfile, "--ssl-keyfile",
                                       str(certificate.keyfile)), "test") == certificate
    with pytest.raises(SystemExit, match="--ssl-keyfile needs --ssl-certfile"):
        server_tls_from_args(_parse("--ssl-keyfile", str(certificate.keyfile)), "test")
    monkeypatch.setenv("MICTLANX_TEST_SSL_CERTFILE", certificate.certfile)
    monkeypatch.setenv("MICTLANX_TEST_SSL_KEYFILE", str(certificate.keyfile))
    assert server_tls_from_args(_parse(), "test") == certificate


def test_peer_client_picks_the_pool_of_the_peer_scheme() -> None:
    client = PeerClient(1.0, 1.0)
    assert client.pool(PeerEntry("a", HOST, 1, "http")) is client.raw
    assert client.pool(PeerEntry("b", HOST, 1, "https")) is client.raw_tls
    assert client.pool(PeerEntry("c", HOST, 1, "gopher")) is None
    client.raw_writes = False
    assert client.pool(PeerEntry("b", HOST, 1, "https")) is None


# --- the lean client over TLS ----------------------------------------------------------------------
class Server:
    """Answers every request with ``ANSWER`` and counts connections; TLS when given a context.
    Without one it answers the first bytes of anything with a 400, as an HTTP server would a
    TLS ClientHello."""

    def __init__(self, context: Optional[ssl.SSLContext]) -> None:
        self.context = context
        self.connections = 0
        self.server: Optional[asyncio.AbstractServer] = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, HOST, 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.context is None:
                await reader.read(1)
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()


def _server_context(certificate: ServerTLS) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certfile, certificate.keyfile)
    return context


async def _get(pool: RawPool, port: int) -> bytes:
    response = await pool.get(HOST, port, "/health", {})
    try:
        return await response.aread()
    finally:
        await response.aclose()


def test_tls_pool_verifies_and_reuses_connections(run: Callable[[Awaitable[Any]], Any],
                                                   certificate: ServerTLS) -> None:
    async def scenario() -> None:
        async with Server(_server_context(certificate)) as server:
            pool = RawPool(5.0, 5.0, ssl_context=peer_ssl_context(certificate.certfile))
            try:
                assert [await _get(pool, server.port) for _ in range(3)] == [b"ok"] * 3
                assert server.connections == 1  # one handshake, then keep-alive
            finally:
                pool.close()

    run(scenario())


def _expect_tls_error(run: Callable[[Awaitable[Any]], Any], server_context: Optional[ssl.SSLContext],
                      client_ca: str, match: str) -> None:
    """A TLS pool trusting ``client_ca`` fails to reach the server with :class:`PeerTLSError`."""
    async def scenario() -> None:
        async with Server(server_context) as server:
            pool = RawPool(2.0, 2.0, ssl_context=peer_ssl_context(client_ca))
            try:
                with pytest.raises(PeerTLSError, match=match):
                    await _get(pool, server.port)
            finally:
                pool.close()

    run(scenario())


def test_tls_pool_refuses_an_untrusted_certificate(run: Callable[[Awaitable[Any]], Any],
                                                   certificate: ServerTLS, tmp_path: Path) -> None:
    other = make_self_signed(tmp_path)
    _expect_tls_error(run, _server_context(certificate), other.certfile, "did not verify.*--peer-ca-file")


def test_tls_pool_against_a_plain_http_server_fails_in_the_handshake(run: Callable[[Awaitable[Any]], Any],
                                                                     certificate: ServerTLS) -> None:
    _expect_tls_error(run, None, certificate.certfile, "TLS handshake with .* failed")
