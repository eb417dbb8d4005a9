"""Issue 14 §2: error messages name the user's operation and object and say what to do."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mictlanx_sync import Client, LocalVSS, RetryPolicy
from mictlanx_sync.errors import ConnectFailedError, NotFoundError

pytestmark = pytest.mark.timeout(120)
ONCE = RetryPolicy(retries=1)


@pytest.fixture(scope="module")
def vss():
    with LocalVSS(peers=1) as instance:
        yield instance


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_router_down_names_the_operation_and_the_fix(tmp_path: Path) -> None:
    port = _closed_port()
    with Client(f"mictlanx://r0@127.0.0.1:{port}/?protocol=http", retry=ONCE, capacity_storage="0") as client:
        error = client.put("photos", "cat", b"meow").unwrap_err()
    assert isinstance(error, ConnectFailedError)
    assert error.message.startswith(f"put photos/cat: cannot connect to 127.0.0.1:{port}: connection refused")
    assert "mictlanx-sync vss" in error.message and "MICTLANX_URI" in error.message
    for internal in ("Max retries", "NewConnectionError", "HTTPConnectionPool", "BoundedHTTP"):
        assert internal not in str(error)


def test_https_default_against_a_plain_http_router_says_add_protocol_http(vss: LocalVSS) -> None:
    host_port = vss.router_urls[0].split("://", 1)[1]
    with Client(f"mictlanx://r0@{host_port}/", retry=ONCE, capacity_storage="0") as client:  # no ?protocol=http
        error = client.get("photos", "cat").unwrap_err()
    assert isinstance(error, ConnectFailedError)
    assert error.message.startswith("get photos/cat: TLS handshake with")
    assert "default to https" in error.message and "?protocol=http" in error.message
    assert "WRONG_VERSION_NUMBER" not in error.message


def test_missing_object_reads_the_same_for_get_get_to_file_and_stat(vss: LocalVSS, tmp_path: Path) -> None:
    expected = "no object 'nokey' in bucket 'photos'"
    with Client(vss.uri, retry=ONCE, capacity_storage="0") as client:
        errors = {
            "get": client.get("photos", "nokey").unwrap_err(),
            "get_to_file": client.get_to_file("photos", "nokey", output_path=str(tmp_path)).unwrap_err(),
            "get_metadata": client.get_metadata("photos", "nokey").unwrap_err(),
        }
    for operation, error in errors.items():
        assert isinstance(error, NotFoundError)
        assert error.message.startswith(f"{operation} photos/nokey: {expected}"), error.message
        assert "nokey_0" not in error.message
