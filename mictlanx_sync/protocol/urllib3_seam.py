"""The one module that touches private attributes of urllib3 and http.client.

Two things the library needs have no public API in urllib3 2.x; each is done here and
nowhere else, and ``tests/unit/test_urllib3_seam.py`` checks both against the installed
urllib3, so an upgrade that moves an attribute fails there first.

1. **A body read straight into the caller's memory** (:func:`socket_reader`). urllib3's
   ``HTTPResponse.readinto`` reads a ``bytes`` object and copies it; the
   ``http.client.HTTPResponse`` underneath (urllib3's private ``_fp``) fills the caller's
   buffer from the socket, framing included (``Content-Length``, chunked). It is used only
   while urllib3 has read none of the body itself (``tell() == 0``, public); otherwise the
   caller falls back to urllib3's own ``readinto``, one copy more and as correct. This
   single copy from socket to result buffer is what makes reads fast (README "Performance").
2. **The connection a request is about to use** (:func:`scoped_pool_class`). A call scope
   (:mod:`.scopes`) must be able to shut the socket of a request that is still connecting
   or waiting for its first byte (a deadline, Ctrl-C, ``Client.close()``), and a request
   must wait a bounded time for a free connection. urllib3 hands out connections in the
   private ``HTTPConnectionPool._get_conn`` / ``_put_conn``; the pool class made here
   overrides both. (The public ``urlopen(pool_timeout=)`` cannot be used: ``requests``
   never passes it.)
"""

from __future__ import annotations

import http.client
from typing import Any, Optional

import urllib3.exceptions

from .scopes import current_scope

__all__ = ["socket_reader", "scoped_pool_class"]


def socket_reader(raw: Any) -> Optional[http.client.HTTPResponse]:
    """The ``http.client.HTTPResponse`` under a urllib3 response whose body nobody has read
    yet, to ``readinto`` from the socket directly; ``None`` when there is none to use."""
    fp = getattr(raw, "_fp", None)  # private: see the module docstring
    tell = getattr(raw, "tell", None)
    untouched = callable(tell) and tell() == 0
    return fp if isinstance(fp, http.client.HTTPResponse) and untouched else None


def scoped_pool_class(base: type, pool_timeout: float) -> type:
    """A subclass of urllib3's pool ``base`` whose ``_get_conn`` waits at most
    ``pool_timeout`` seconds (then urllib3's ``EmptyPoolError``), and whose connections in
    use belong to the current call scope (:mod:`.scopes`), which can shut them down."""

    def _get_conn(self: Any, timeout: Optional[float] = None) -> Any:
        conn = base._get_conn(self, timeout if timeout is not None else pool_timeout)  # type: ignore[attr-defined]
        scope = current_scope()
        if scope is not None:
            if scope.aborted:  # a new connection would not be shut down: refuse the request
                base._put_conn(self, conn)  # type: ignore[attr-defined]
                raise urllib3.exceptions.ProtocolError(f"call {scope.reason}: no new request")
            scope.attach(conn)
            conn.mictlanx_scope = scope
        return conn

    def _put_conn(self: Any, conn: Any) -> None:
        scope = getattr(conn, "mictlanx_scope", None)
        if scope is not None:
            scope.detach(conn)
            conn.mictlanx_scope = None
            if scope.aborted:  # its socket was shut down: never reuse it
                conn.close()
        base._put_conn(self, conn)  # type: ignore[attr-defined]

    return type(f"Bounded{base.__name__}", (base,), {"_get_conn": _get_conn, "_put_conn": _put_conn})
