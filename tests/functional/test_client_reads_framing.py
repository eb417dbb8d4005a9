"""Chunk bodies are read straight into the result (``readinto``); the framing stays strict.

A router that sends fewer bytes than its ``Content-Length`` (fault injection: ``truncate``)
or more (a chunked body running past the announced length, through a small relaying
proxy) never has its bytes accepted: ``UpstreamProtocolError`` after the retries, and a
later good answer is read correctly on the same client. (Breakers off: every refused
answer is a failure of the only router.)
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from mictlanx_sync import Client, RetryPolicy
from mictlanx_sync.protocol.errors import UpstreamProtocolError
from mictlanx_sync.protocol.uri import Endpoint, build
from mictlanx_sync.server.local import LocalVSS

pytestmark = pytest.mark.timeout(120)

FAST = RetryPolicy(retries=3, initial_delay=0.01, backoff_factor=1.0, max_delay=0.02, jitter=False, deadline=30.0)
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=2, health_interval=0.2, faults="[]") as instance:
        yield instance


def set_faults(url: str, rules: list[dict[str, Any]]) -> None:
    assert requests.post(f"{url}/_faults", json=rules, timeout=10).status_code == 200


@pytest.fixture()
def router(vss: LocalVSS) -> Iterator[str]:
    url = vss.router_urls[0]
    yield url
    assert requests.delete(f"{url}/_faults", timeout=10).status_code == 204


@pytest.mark.parametrize("capacity", ["0", "64MB"])
def test_short_bodies_are_refused_then_retried(vss: LocalVSS, router: str, tmp_path: Any, capacity: str) -> None:
    data = os.urandom(3 * CHUNK + 11)
    with Client(vss.uri, retry=FAST, breaker=None, capacity_storage=capacity, cache_path=str(tmp_path / "c"),
                progress=False) as client:
        assert client.put("frm", f"short-{capacity}", data, chunk_size=CHUNK).unwrap()
        # Every attempt cut short (connection closed with Content-Length unmet): refused.
        set_faults(router, [{"route": "R11", "action": "truncate", "bytes": 1000}])
        error = client.get("frm", f"short-{capacity}").unwrap_err()
        assert type(error) is UpstreamProtocolError and "short body" in error.message, repr(error)
        # Two cut answers, then good ones: the retries read the right bytes.
        set_faults(router, [{"route": "R11", "action": "truncate", "bytes": CHUNK // 2, "count": 2}])
        assert client.get("frm", f"short-{capacity}").unwrap().data.tobytes() == data
        set_faults(router, [{"route": "R11", "action": "truncate", "bytes": 5000, "count": 2}])
        path = client.get_to_file("frm", f"short-{capacity}", str(tmp_path / "out"), fullname="s.bin",
                                  force=True).unwrap()
        assert Path(path).read_bytes() == data


class _Relay(http.server.BaseHTTPRequestHandler):
    """Relays GETs to the router; the data answer of ``key_1`` gets a chunked body that runs
    ``extra`` bytes past its (kept) Content-Length, or stops ``-extra`` bytes short of it."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    extra = 0
    mangled = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        answer = requests.get(self.upstream + self.path, headers=headers, timeout=10)
        body = answer.content
        chunked = bool(self.extra) and re.fullmatch(r"/api/v4/buckets/frm/more-\w+_1", self.path) is not None
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if not chunked:
            self.end_headers()
            self.wfile.write(body)
            return
        type(self).mangled += 1
        sent = body + os.urandom(self.extra) if self.extra > 0 else body[:self.extra]
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(sent), sent))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("extra", [1, 4096, -1])
def test_body_running_past_or_short_of_content_length_is_refused(vss: LocalVSS, tmp_path: Any,
                                                                  extra: int) -> None:
    handler = type("Relay", (_Relay,), {"upstream": vss.router_urls[0], "extra": extra, "mangled": 0})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    proxy.daemon_threads = True
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    key = f"more-{'p' if extra > 0 else 'm'}{abs(extra)}"
    try:
        uri = build([Endpoint("relay", "127.0.0.1", proxy.server_address[1], protocol="http")])
        data = os.urandom(3 * CHUNK)
        with Client(vss.uri, progress=False, capacity_storage="0") as writer:
            assert writer.put("frm", key, data, chunk_size=CHUNK).unwrap()
        with Client(uri, retry=FAST, breaker=None, capacity_storage="0", progress=False) as client:
            error = client.get("frm", key).unwrap_err()
            assert type(error) is UpstreamProtocolError, repr(error)
            assert ("more than the announced" if extra > 0 else "short body") in error.message
            assert handler.mangled == FAST.retries
            handler.extra = 0  # the relay behaves again: same client, same pool, right bytes
            got = client.get("frm", key).unwrap()
            assert got.data.tobytes() == data
            assert got.metadatas[1].checksum == hashlib.sha256(data[CHUNK:2 * CHUNK]).hexdigest()
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
