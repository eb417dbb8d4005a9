"""Optional bearer-token authentication for the peer and the router (an ASGI middleware).

With a token configured (peer: ``--token``/``MICTLANX_PEER_TOKEN``; router: ``--token``/
``MICTLANX_ROUTER_TOKEN``), every request must carry ``Authorization: Bearer <token>``;
a missing or wrong token answers **401** ``{"detail": {"code": 401, "msg": ...}}`` with
``WWW-Authenticate: Bearer``, before any body is read (a request with a body is answered
with ``Connection: close``). Tokens are compared in constant time (``hmac.compare_digest``)
and never logged.

A peer (``accept_grants``) also admits a request carrying a router's read grant for its exact
path (:mod:`.grants`): a direct read a router handed to a client that has no peer token.

``GET /health`` (with or without the root path) stays **open**, so health checks and load
balancers work without credentials; it reveals only ``status`` and the peer id or the
number of available peers. Answered to a request without the right token, it carries
``WWW-Authenticate: Bearer``: a router whose peer token is missing or wrong treats such a
peer as unavailable instead of routing requests that would fail. Everything else,
``/openapi.json`` and ``/_faults`` included, needs the token. Without a token the
middleware is not installed.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Callable, Optional

from ..protocol.versions import VERSION_HEADER
from .grants import granted_version

OPEN_PATHS = ("/health",)
VERSION_KEY = VERSION_HEADER.lower().encode("latin-1")
_CHALLENGE = (b"www-authenticate", b'Bearer realm="mictlanx"')


def bearer(token: str) -> str:
    """The ``Authorization`` header value for ``token``."""
    return f"Bearer {token}"


class AuthMiddleware:
    """Rejects requests without the configured bearer token (``/health`` excepted)."""

    def __init__(self, app: Any, token: str, root_path: str = "", accept_grants: bool = False) -> None:
        if not token:
            raise ValueError("an empty token cannot be used")
        self.app = app
        self._token = token
        #: a peer also admits a router's read grant (``server.grants``) in place of the token
        self.accept_grants = accept_grants
        self._expected = bearer(token).encode("latin-1")
        root = "/" + root_path.strip("/") if root_path.strip("/") else ""
        self._open = {p for p in OPEN_PATHS} | {root + p for p in OPEN_PATHS}

    def allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """True when the last ``Authorization`` header is exactly ``Bearer <token>``."""
        value = b""
        for name, raw in headers:
            if name.lower() == b"authorization":
                value = raw.strip()
        return hmac.compare_digest(value, self._expected)

    async def __call__(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or self.allowed(scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        if self.accept_grants:
            version = granted_version(self._token, scope.get("method", ""), scope.get("path", ""),
                                      scope.get("query_string", b""))
            if version is not None:  # the version the grant names, whatever the request said
                headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != VERSION_KEY]
                if version:
                    headers.append((VERSION_KEY, version.encode("latin-1")))
                await self.app({**scope, "headers": headers}, receive, send)
                return
        if scope.get("path") in self._open:
            await self.app(scope, receive, _challenge(send))
            return
        await reject(scope, send)


class _challenge:  # noqa: N801 (used like a function)
    """``send`` adding ``WWW-Authenticate`` to the response head (open routes, no valid token).

    It keeps the server's request cycle as ``__self__`` so inner middleware (fault
    injection) still reaches the connection.
    """

    def __init__(self, send: Callable[..., Any]) -> None:
        self._send = send
        self.__self__ = getattr(send, "__self__", None)

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), _CHALLENGE]}
        await self._send(message)


async def reject(scope: dict, send: Callable[..., Any]) -> None:
    """Answer 401 without reading the body (closing the connection when one was sent)."""
    body = json.dumps({"detail": {"code": 401, "msg": "missing or invalid bearer token"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               _CHALLENGE]
    if _has_body(scope):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _has_body(scope: dict) -> bool:
    for name, value in scope.get("headers", []):
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return True
        if lowered == b"content-length" and value.strip() not in (b"0", b""):
            return True
    return False


def wrap(app: Any, token: Optional[str], root_path: str = "", accept_grants: bool = False) -> Any:
    """``app`` behind an :class:`AuthMiddleware` when ``token`` is set, else ``app`` itself;
    ``accept_grants`` (peers) also admits read grants (``server.grants``)."""
    return AuthMiddleware(app, token, root_path, accept_grants) if token else app
