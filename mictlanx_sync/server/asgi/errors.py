"""The errors a handler raises to answer, and the two that end a request without one.

:class:`HTTPError` is an answer ``{"detail": {"code", "msg", ...extra}}`` with an HTTP status
(protocol §2.6); the app sends it when nothing was sent yet. :class:`ClientDisconnected` (the
client went away: nobody to answer) and :class:`StreamBroken` (an answer already started cannot
be completed: the server closes the connection) end the request with no answer.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional


class HTTPError(Exception):
    """An error answer ``{"detail": {"code", "msg", ...extra}}`` with an HTTP status."""

    def __init__(self, status: int, code: int, msg: str, headers: Optional[Mapping[str, str]] = None,
                 **extra: Any) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": {"code": self.code, "msg": self.msg, **self.extra}}


def bad_request(msg: str, **extra: Any) -> HTTPError:
    return HTTPError(400, 400, msg, **extra)


def unprocessable(msg: str, loc: list[Any], kind: str = "value_error") -> HTTPError:
    """422/400 with the ``errors`` list of §2.6."""
    return HTTPError(422, 400, msg, errors=[{"loc": loc, "msg": msg, "type": kind}])


def not_found(msg: str, **extra: Any) -> HTTPError:
    return HTTPError(404, 404, msg, **extra)


class ClientDisconnected(Exception):
    """The client went away (ASGI ``http.disconnect``) before its request was answered."""


class StreamBroken(Exception):
    """An answer that already started cannot be completed (an upstream stream broke): the
    connection is closed without completing it, so the client sees a broken stream."""
