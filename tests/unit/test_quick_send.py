"""Issue 13's cheaper client call paths send and bind exactly what the slower ones did.

- ``quick_send.send`` against ``Session.request`` on a ``Transport`` session: the same request
  line, headers and body reach a server (token, a header removed with ``None``, params,
  bytes and streamed bodies), and a cookie the server sets is never sent back.
- ``named_operation``'s fast binding gives the names ``Signature.bind_partial`` gives, and
  leaves every call ``bind_partial`` refuses to the method's own ``TypeError``.
- ``call_with_retry`` builds no tenacity machinery when the first attempt ends the call.
"""

from __future__ import annotations

import http.server
import inspect
import logging
import threading
from typing import Any, Iterator

import pytest

from mictlanx_sync.client import operation
from mictlanx_sync.protocol import quick_send, retrying
from mictlanx_sync.protocol.policies import RetryPolicy
from mictlanx_sync.protocol.result import Ok
from mictlanx_sync.protocol.transport import Transport


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = []

    def _answer(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    break
                body += chunk
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        skip = {"host"}
        _Echo.seen.append((f"{self.command} {self.path}",
                           sorted((k.lower(), v) for k, v in self.headers.items() if k.lower() not in skip), body))
        self.send_response(200)
        self.send_header("Set-Cookie", "session=abc; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def echo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Echo.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CALLS: list[dict[str, Any]] = [
    {"method": "get", "path": "/api/v4/buckets/b/metadata/k", "headers": {"Mictlanx-Inline-Max": "1024"}},
    {"method": "PUT", "path": "/a b/ñ?x=1", "params": {"start": "0", "skip": None, "many": ["1", "2"]},
     "headers": {"Authorization": None, "Content-Type": "application/json"}, "data": b'{"a":1}'},
    {"method": "POST", "path": "/stream", "headers": {}, "data": iter([b"ab", b"cd"])},
    {"method": "POST", "path": "/empty", "headers": {"accept": "text/plain"}, "data": b""},
    {"method": "DELETE", "path": "/none?x=%41&y=b%20c", "headers": {"Mictlanx-Version": "v"}},
    {"method": "GET", "path": "/with-params", "params": [("a", "1"), ("a", "2")], "headers": {}},
]


@pytest.mark.parametrize("call", CALLS, ids=[c["path"] for c in CALLS])
def test_quick_send_sends_what_session_request_sent(echo: str, call: dict[str, Any]) -> None:
    transport = Transport(echo, token="t0k")
    session = transport.session()
    for sender in ("session", "quick"):
        data = call.get("data")
        if sender == "session" and not isinstance(data, (bytes, type(None))):
            data = iter([b"ab", b"cd"])
        kwargs = {"params": call.get("params"), "headers": call["headers"], "data": data,
                  "timeout": (5.0, 5.0), "verify": True}
        if sender == "session":
            response = session.request(call["method"], echo + call["path"], stream=True, allow_redirects=False,
                                       **kwargs)
        else:
            response = quick_send.send(session, call["method"], echo + call["path"], **kwargs)
        assert response.status_code == 200 and response.content == b"ok"
        response.close()
    assert len(_Echo.seen) == 2
    assert _Echo.seen[0] == _Echo.seen[1]
    assert all(name != "cookie" for name, _ in _Echo.seen[1][1])  # the Set-Cookie is never sent back
    transport.close()


def _bind(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    seen: list[tuple[Any, Any]] = []
    real = operation.run_operation
    operation.run_operation = lambda name, bucket, key, call: (seen.append((bucket, key)), call())[1]
    try:
        operation.named_operation("op", method)(*args, **kwargs)
    except TypeError:
        return TypeError
    finally:
        operation.run_operation = real
    return seen[0]


def _expected(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        bound = inspect.signature(method).bind_partial(*args, **kwargs).arguments
        method(*args, **kwargs)
    except TypeError:
        return TypeError
    return bound.get("bucket_id"), next((bound[k] for k in ("key", "ball_id") if k in bound), None)


def _m1(self: Any, bucket_id: str, key: str, /, x: int = 1, *, y: int = 2, **kw: Any) -> None: ...
def _m2(self: Any, bucket_id: str, key: Any = None, *rest: Any, z: int = 0) -> None: ...
def _m3(self: Any, bucket_id: str, ball_id: str = "d", chunk: int = 3) -> None: ...


@pytest.mark.parametrize(("method", "args", "kwargs"), [
    (_m1, (0, "b", "k", 5), {"y": 3, "q": 1}), (_m1, (0,), {"bucket_id": "b", "key": "k"}),
    (_m1, (0, "b", "k"), {"kw": 1}), (_m2, (0, "b", "k", 1, 2), {"z": 1}), (_m2, (0,), {"bucket_id": "bb"}),
    (_m3, (0, "b"), {"ball_id": "x"}), (_m3, (0, "b"), {}), (_m3, (0, "b"), {"bucket_id": "c"}),
    (_m3, (0, 1, 2, 3, 4), {}), (_m3, (0,), {"nope": 1}),
])
def test_named_operation_binds_as_bind_partial(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert _bind(method, args, kwargs) == _expected(method, args, kwargs)


def test_first_attempt_that_ends_the_call_builds_no_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tenacity.Retrying built for a call the first attempt ended")

    monkeypatch.setattr(retrying.tenacity, "Retrying", refuse)
    done = retrying.call_with_retry(lambda n: Ok(n), RetryPolicy(), logger=logging.getLogger("t"), describe="d")
    assert done == Ok(1)
