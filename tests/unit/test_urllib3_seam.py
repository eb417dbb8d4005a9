"""The one seam into urllib3's private attributes (``protocol/urllib3_seam.py``), checked
against the installed urllib3: if an upgrade moves ``_fp``, ``_get_conn`` or ``_put_conn``,
these tests fail before any read silently loses its zero-copy path or its scope."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from typing import Iterator

import pytest
import requests
import urllib3
import urllib3.exceptions
from urllib3.connectionpool import HTTPConnectionPool

from mictlanx_sync.protocol.scopes import call_scope
from mictlanx_sync.protocol.urllib3_seam import scoped_pool_class, socket_reader

pytestmark = pytest.mark.timeout(30)

BODY = b"0123456789" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stops reading mid-body (as one test does) is expected


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_urllib3_is_a_2x_release() -> None:
    assert urllib3.__version__.split(".")[0] == "2"  # the seam was written against 2.x


def test_an_unread_body_is_read_from_the_socket_into_the_callers_buffer(url: str) -> None:
    with requests.get(url, stream=True, timeout=5) as response:
        reader = socket_reader(response.raw)
        assert isinstance(reader, http.client.HTTPResponse)
        view = memoryview(bytearray(len(BODY) + 10))
        got = 0
        while chunk := reader.readinto(view[got:]):
            got += chunk
        assert bytes(view[:got]) == BODY


def test_once_urllib3_has_read_some_of_the_body_the_seam_steps_aside(url: str) -> None:
    with requests.get(url, stream=True, timeout=5) as response:
        assert response.raw.read(3) == BODY[:3]
        assert socket_reader(response.raw) is None  # urllib3's own readinto serves the rest
    assert socket_reader(object()) is None


def test_an_exhausted_pool_waits_its_timeout_then_fails() -> None:
    pool_class = scoped_pool_class(HTTPConnectionPool, 0.2)
    pool = pool_class("127.0.0.1", 1, maxsize=1, block=True)
    held = pool._get_conn()
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.EmptyPoolError):
        pool._get_conn()
    assert 0.15 < time.monotonic() - started < 2
    pool._put_conn(held)
    pool.close()


def test_connections_belong_to_the_call_scope_that_took_them(url: str) -> None:
    pool_class = scoped_pool_class(HTTPConnectionPool, 1.0)
    host, port = url.split("//")[1].rstrip("/").split(":")
    pool = pool_class(host, int(port), maxsize=2, block=True)
    with call_scope() as scope:
        conn = pool._get_conn()
        assert conn in scope._connections and conn.mictlanx_scope is scope
        pool._put_conn(conn)
        assert conn not in scope._connections and conn.mictlanx_scope is None
        scope.abort("closed")
        with pytest.raises(urllib3.exceptions.ProtocolError, match="closed"):
            pool._get_conn()  # an ended scope starts no new request
    pool.close()
