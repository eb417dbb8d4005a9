"""``ServiceClient``, the base of ``Peer`` and ``Router``, and the helpers their endpoints share.

A service client has an address (``base_url()``, §P6.3), one :class:`~.transport.Transport`
(its pooled session), equality on its identity, and two ways to send: :meth:`ServiceClient._send`
(an answer parsed into a model, or ``True``) and :meth:`ServiceClient._open` (a data answer as a
:class:`~.stream.DataStream`). The helpers build headers, validate ids, parse bodies and make
errors that carry the request's ``bucket_id``/``key``/``router``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import requests

from .errors import MictlanXError, ResponseFormatError, ValidationError, error_from_exception
from .ids import validate_id, validate_key
from .models import parse_as
from .result import Err, Ok, Result
from .stream import DataStream
from .timeouts import DEFAULT_CONNECT_TIMEOUT, TimeoutArg
from .transport import Transport
from .uri import base_url as _base_url

__all__ = ["copy_headers", "validated", "parse_body", "ServiceClient", "make_error", "ok_value", "format_error"]


def format_error(exc: BaseException, **context: Optional[str]) -> MictlanXError:
    """A ``ResponseFormatError`` carrying ``context`` (used by ``Peer``/``Router`` parsers)."""
    if isinstance(exc, ResponseFormatError):
        if exc.bucket_id is None and exc.key is None and exc.router is None:
            clone = ResponseFormatError(exc.message, exc.status_code, exc.code, exc.detail, **context)
            clone.__cause__ = exc.__cause__
            return clone
        return exc
    return error_from_exception(exc, **context)


# --- the shared base of Peer and Router --------------------------------------------------
def copy_headers(headers: Optional[Mapping[str, Any]], **extra: Optional[str]) -> dict[str, str]:
    """A new headers dict: the caller's (never mutated) plus ``extra`` values that are not None."""
    if headers is not None and not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping, not {type(headers).__name__}")
    result = {str(k): str(v) for k, v in (headers or {}).items()}
    for name, value in extra.items():
        if value is not None:
            result[name.replace("_", "-")] = value
    return result


def validated(check: Callable[[], Any]) -> Optional[Err[Any, MictlanXError]]:
    """Run id checks; ``Err(ValidationError)`` if one fails, else ``None``."""
    try:
        check()
    except ValidationError as exc:
        return Err(exc)
    return None


def parse_body(response: requests.Response, tp: Any, **context: Optional[str]) -> Result[Any, MictlanXError]:
    """Parse a 2xx JSON body as ``tp`` (``ResponseFormatError`` with ``context`` on failure)."""
    try:
        return Ok(parse_as(tp, response.content))
    except ResponseFormatError as exc:
        return Err(format_error(exc, **context))


class ServiceClient:
    """What ``Peer`` and ``Router`` share: address, base URL, transport, equality."""

    def __init__(
        self, ip_addr: str, port: int, protocol: str = "http", api_version: int = 4, *,
        path_prefix: str = "", timeout: TimeoutArg = (DEFAULT_CONNECT_TIMEOUT, 120.0), verify: Any = True,
        pool_maxsize: int = 16, token: Optional[str] = None,
    ) -> None:
        if not isinstance(ip_addr, str):
            raise TypeError(f"ip_addr must be a str, not {type(ip_addr).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if protocol not in ("http", "https"):
            raise ValidationError(f"protocol must be http or https, not {protocol!r}")
        self.ip_addr = ip_addr
        self.port = port
        self.protocol = protocol
        self.api_version = api_version
        self.path_prefix = ("/" + path_prefix.strip("/")) if path_prefix and path_prefix.strip("/") else ""
        self.verify = verify
        self.pool_maxsize = pool_maxsize
        #: bearer token sent as ``Authorization: Bearer <token>`` on every request (never in repr)
        self.token = token
        self._transport = Transport(self.base_url(), timeout=timeout, verify=verify, pool_maxsize=pool_maxsize,
                                    token=token)
        self.timeout = self._transport.timeout

    def base_url(self) -> str:
        """``{protocol}://{host}[:port]{path_prefix}`` (§P6.3)."""
        return _base_url(self.protocol, self.ip_addr, self.port, self.path_prefix)

    def get_addr(self) -> str:
        return f"{self.ip_addr}:{self.port}"

    def _api(self, path: str) -> str:
        return f"/api/v{self.api_version}{path}"

    def _error_context(self) -> dict[str, Optional[str]]:
        """Context every error of this client carries (``Router`` adds ``router``)."""
        return {}

    def _send(self, method: str, path: str, tp: Any = None, *, api: bool = True, raw: bool = False,
              **kwargs: Any) -> Result[Any, MictlanXError]:
        """One request; ``tp`` None → ``Ok(True)``, else the body parsed as ``tp``.

        With ``raw`` (or ``stream``) the ``requests.Response`` itself is the value.
        """
        context = {**self._error_context(), **kwargs.pop("context", {})}
        result = self._transport.request(method, self._api(path) if api else path, context=context, **kwargs)
        if isinstance(result, Err) or raw or kwargs.get("stream"):
            return result
        if tp is None:
            return Ok(True)
        return parse_body(ok_value(result), tp, **context)

    def _stream_ball(self, bucket_id: str, key: str, timeout: Any, headers: Optional[Mapping[str, str]],
                     verify: Any) -> Result[requests.Response, MictlanXError]:
        """``GET /buckets/{b}/{k}`` (P5 on a peer, R11 on a router): the open streaming
        ``requests.Response`` the public ``get_streaming`` returns; the caller closes it."""
        bad = validated(lambda: (validate_id(bucket_id, "bucket_id"), validate_key(key, "key")))
        if bad is not None:
            return bad
        hdrs = copy_headers(headers)
        hdrs.setdefault("Accept-Encoding", "identity")
        return self._send("GET", f"/buckets/{bucket_id}/{key}", headers=hdrs, timeout=timeout, verify=verify,
                          stream=True, context={"bucket_id": bucket_id, "key": key})

    def _open(self, method: str, path: str, *, api: bool = True, **kwargs: Any) -> Result[DataStream, MictlanXError]:
        """One request whose 2xx answer is a data stream (closed by the caller)."""
        context = {**self._error_context(), **kwargs.pop("context", {})}
        return self._transport.open_stream(method, self._api(path) if api else path, context=context, **kwargs)

    def _identity(self) -> tuple[str, str, int, str]:
        return (self.protocol, self.ip_addr, self.port, self.path_prefix)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._identity() == other._identity()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._identity()))

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self._transport.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_error(cls: type[MictlanXError], message: str, context: Mapping[str, Optional[str]]) -> MictlanXError:
    """``cls(message)`` carrying the ``bucket_id``/``key``/``router`` of ``context``."""
    return cls(message, bucket_id=context.get("bucket_id"), key=context.get("key"), router=context.get("router"))


def ok_value(result: Result[Any, Any]) -> Any:
    """The value of a result already known to be ``Ok``."""
    assert isinstance(result, Ok)
    return result.value
