"""The error hierarchy and the one place where responses and transport failures become errors.

::

    MictlanXError
    ├── ValidationError (also ValueError)        400/400  bad argument, id, URI or request
    │   └── ClientClosedError                   1008     any operation on a closed Client
    ├── AuthenticationError                     401/401
    ├── AccessDeniedError                       403/403
    ├── NotFoundError                           404/404
    ├── AlreadyExistsError (FileAlreadyExists)  409/405  other content under the key
    │   └── PreconditionFailedError             412/405  If-Match / Task-Id failed
    ├── SupersededError                         409/409  a newer version or a delete is already stored
    ├── MaxAvailabilityReachedError             404/666  too few or no available peers
    ├── UnknownError                            500/500  server fault, unclassifiable answer
    ├── IntegrityError                          400/501  size or SHA-256 mismatch, mixed versions
    ├── PutChunksError                          502/502  write failed on peers (also 507)
    ├── GetChunkError                           502/503  read failed on every replica
    ├── PeerOperationError                      502/504  delete/disable/update failed on peers
    ├── NetworkError                            1000     transport failure (retryable)
    │   ├── ConnectFailedError                  1001     refused or reset
    │   │   └── TLSVerificationError            1006     certificate did not verify (never retried)
    │   ├── DNSResolutionError                  1002
    │   ├── CircuitOpenError                    1003     no eligible router
    │   ├── RequestTimeoutError                 1004     timeout or exhausted pool
    │   └── UpstreamProtocolError               1005     truncated or malformed transport
    ├── ResponseFormatError                     1007     unparseable answer (never retried)
    └── LocalStorageError                       1100     local disk or cache failure

:func:`error_from_response` and :func:`error_from_exception` are the only translators
(client-api §3); a ``MictlanXError`` is never re-wrapped.

**What the retry layer reads.** Every error says itself whether another attempt may succeed
(:attr:`MictlanXError.retryable`), whether it shows the router unhealthy so that router's
circuit breaker counts it (:attr:`MictlanXError.router_fault`), and how long the server asked
to wait (:attr:`MictlanXError.retry_after`). The defaults follow client-api §8.1 from the HTTP
status and ``code`` actually received; a class whose meaning differs overrides the property
(transport errors are retried and count against the router, a TLS verification failure is
neither, an integrity failure is never retried). The client's internal errors (a bad copy of
a chunk, a lost write group) state their own answers the same way, with no HTTP status made
up to steer the decision.
"""

from __future__ import annotations

import copy
import json
import math
import re
import ssl
from typing import Any, Mapping, Optional

from .plain_errors import network_text

__all__ = [
    "MictlanXError", "ValidationError", "ClientClosedError", "AuthenticationError", "AccessDeniedError",
    "NotFoundError", "AlreadyExistsError", "FileAlreadyExists", "PreconditionFailedError", "SupersededError",
    "MaxAvailabilityReachedError", "UnknownError", "IntegrityError", "PutChunksError",
    "GetChunkError", "PeerOperationError", "NetworkError", "ConnectFailedError",
    "DNSResolutionError", "CircuitOpenError", "RequestTimeoutError", "UpstreamProtocolError",
    "TLSVerificationError", "ResponseFormatError", "LocalStorageError", "error_from_response", "error_from_body",
    "error_from_exception", "MAX_MESSAGE_BYTES", "RETRYABLE_STATUSES", "RETRY_AFTER_STATUSES",
]

MAX_MESSAGE_BYTES = 1024

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses retried (client-api §8.1); every other 4xx/5xx answer is final."""

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""HTTP statuses whose ``Retry-After`` header is honoured."""


class MictlanXError(Exception):
    """Root of every error this library returns or raises.

    Attributes: ``message``, ``status_code`` (HTTP status received, else the class
    default), ``code`` (``detail.code`` received, else the class default), ``error_code``
    (alias of ``code``), ``detail`` (the parsed ``detail`` dict or ``None``), and
    ``bucket_id``, ``key``, ``router`` where known.
    """

    default_message = "MictlanX error"
    default_status = 500
    default_code = 500

    def __init__(
        self,
        message: Optional[str] = None,
        status_code: Optional[int] = None,
        code: Optional[int] = None,
        detail: Optional[Mapping[str, Any]] = None,
        *,
        bucket_id: Optional[str] = None,
        key: Optional[str] = None,
        router: Optional[str] = None,
    ) -> None:
        self.message = self.default_message if message is None else str(message)
        self.status_code = self.default_status if status_code is None else int(status_code)
        self.code = self.default_code if code is None else int(code)
        self.detail = dict(detail) if detail is not None else None
        self.bucket_id = bucket_id
        self.key = key
        self.router = router
        super().__init__(self.message)

    @property
    def error_code(self) -> int:
        return self.code

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (client-api §8.1): an answer with HTTP status
        429, 500, 502, 503 or 504, whatever its ``code`` (so 503/666 and 503/500 are retried);
        never another 4xx. Transport errors override it (:class:`NetworkError`)."""
        return self.status_code in RETRYABLE_STATUSES

    @property
    def router_fault(self) -> bool:
        """Whether this error shows the *router* unhealthy, so its circuit breaker counts it:
        code 500 (a server fault or shutdown). Every other answer, 404s and the peer-side codes
        (502, 503, 504, 666) included, proves the router is up."""
        return self.code == 500

    @property
    def retry_after(self) -> Optional[float]:
        """The seconds a 429/503 answer asked to wait (its ``Retry-After``, kept by the
        transport as ``detail["retry_after"]``), else ``None``: the backoff applies. Only the
        delta-seconds form is understood; an HTTP date or garbage is ignored."""
        if self.status_code not in RETRY_AFTER_STATUSES:
            return None
        return _seconds((self.detail or {}).get("retry_after"))

    def get_name(self) -> str:
        """The class name in upper snake case, e.g. ``NOT_FOUND_ERROR``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).upper()

    def with_prefix(self, prefix: str) -> MictlanXError:
        """A copy whose message starts with ``prefix`` (used by ``Result.expect``)."""
        clone = copy.copy(self)
        clone.message = f"{prefix}: {self.message}"
        clone.args = (clone.message,)
        return clone

    def __str__(self) -> str:
        return f"{type(self).__name__} (status={self.status_code}, code={self.code}): {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code}, code={self.code})"

    def __reduce__(self) -> Any:
        kwargs = {"bucket_id": self.bucket_id, "key": self.key, "router": self.router}
        return (_rebuild, (type(self), self.message, self.status_code, self.code, self.detail, kwargs))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__reduce__() == other.__reduce__()  # type: ignore[union-attr]

    __hash__ = Exception.__hash__


def _rebuild(cls: type, message: str, status: int, code: int, detail: Any, kwargs: dict) -> MictlanXError:
    return cls(message, status, code, detail, **kwargs)  # type: ignore[no-any-return]


def _seconds(raw: Any) -> Optional[float]:
    """A non-negative finite number of seconds from a header value, else ``None``."""
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ValidationError(MictlanXError, ValueError):
    default_message, default_status, default_code = "Invalid argument", 400, 400


class ClientClosedError(ValidationError):
    """The ``Client`` was closed: every operation on it, and every transfer still running
    when ``close()`` was called, ends with this error (status and code 1008).

    It is a ``ValidationError`` (the call itself is the mistake, and client-api §8.1 names
    that class for a closed client), so ``except ValidationError`` still catches it; never
    retried, and never counted by a router's circuit breaker.
    """

    default_message, default_status, default_code = "client is closed", 1008, 1008


class AuthenticationError(MictlanXError):
    default_message, default_status, default_code = "Authentication required", 401, 401


class AccessDeniedError(MictlanXError):
    default_message, default_status, default_code = "Access denied", 403, 403


class NotFoundError(MictlanXError):
    default_message, default_status, default_code = "Not found", 404, 404


class AlreadyExistsError(MictlanXError):
    default_message, default_status, default_code = "Already exists", 409, 405


FileAlreadyExists = AlreadyExistsError


class PreconditionFailedError(AlreadyExistsError):
    default_message, default_status, default_code = "Precondition failed", 412, 405


class SupersededError(MictlanXError):
    """A write or commit older than what the peers hold (docs/consistency.md §2.1).

    ``detail["superseded_by"]`` names the newer version or tombstone. Never retried: the
    same version would be refused again.
    """

    default_message, default_status, default_code = "Superseded by a newer version", 409, 409

    @property
    def superseded_by(self) -> Optional[str]:
        value = (self.detail or {}).get("superseded_by")
        return value if isinstance(value, str) else None


class MaxAvailabilityReachedError(MictlanXError):
    default_message, default_status, default_code = "No available peers", 404, 666


class UnknownError(MictlanXError):
    default_message, default_status, default_code = "Unknown error", 500, 500


class IntegrityError(MictlanXError):
    """A size or SHA-256 mismatch. Never retried as such: an upload's is the caller's data,
    and a read handles bad copies itself, moving to another replica (client-api §8.6)."""

    default_message, default_status, default_code = "Integrity check failed", 400, 501

    @property
    def retryable(self) -> bool:
        return False


class PutChunksError(MictlanXError):
    default_message, default_status, default_code = "Write failed on peers", 502, 502


class GetChunkError(MictlanXError):
    default_message, default_status, default_code = "Read failed on every replica", 502, 503


class PeerOperationError(MictlanXError):
    default_message, default_status, default_code = "Operation failed on peers", 502, 504


class NetworkError(MictlanXError):
    """A transport failure: retried, and counted against the router by its breaker."""

    default_message, default_status, default_code = "Network error", 1000, 1000

    @property
    def retryable(self) -> bool:
        return True

    @property
    def router_fault(self) -> bool:
        return True


class ConnectFailedError(NetworkError):
    default_message, default_status, default_code = "Connection failed", 1001, 1001


class TLSVerificationError(ConnectFailedError):
    """The server's TLS certificate did not verify (unknown CA, expired, wrong host name).

    A ``ConnectFailedError`` (``except ConnectFailedError``/``NetworkError`` still catch it),
    but **never retried**, and not counted by the router's circuit breaker: another attempt
    meets the same certificate, and the fix is the client's trust (``verify=``) or the
    server's certificate, not waiting.
    """

    default_message, default_status, default_code = "TLS certificate did not verify", 1006, 1006

    @property
    def retryable(self) -> bool:
        return False

    @property
    def router_fault(self) -> bool:
        return False


class DNSResolutionError(NetworkError):
    default_message, default_status, default_code = "DNS resolution failed", 1002, 1002


class CircuitOpenError(NetworkError):
    """No eligible router: every breaker is open. Retried (a breaker may close), but our own
    verdict, never counted against a router again."""

    default_message, default_status, default_code = "No eligible router: circuit open", 1003, 1003

    @property
    def router_fault(self) -> bool:
        return False


class RequestTimeoutError(NetworkError):
    default_message, default_status, default_code = "Request timed out", 1004, 1004


class UpstreamProtocolError(NetworkError):
    default_message, default_status, default_code = "Malformed or truncated transfer", 1005, 1005


class ResponseFormatError(MictlanXError):
    """An answer that cannot be parsed or violates its schema: never retried."""

    default_message, default_status, default_code = "Unexpected response format", 1007, 1007

    @property
    def retryable(self) -> bool:
        return False


class LocalStorageError(MictlanXError):
    default_message, default_status, default_code = "Local storage failure", 1100, 1100


_BY_CODE: dict[int, type[MictlanXError]] = {
    400: ValidationError, 401: AuthenticationError, 403: AccessDeniedError, 404: NotFoundError,
    405: AlreadyExistsError, 409: SupersededError, 500: UnknownError, 501: IntegrityError, 502: PutChunksError,
    503: GetChunkError, 504: PeerOperationError, 666: MaxAvailabilityReachedError,
}
_BY_STATUS: dict[int, type[MictlanXError]] = {
    400: ValidationError, 413: ValidationError, 416: ValidationError, 422: ValidationError,
    401: AuthenticationError, 403: AccessDeniedError, 404: NotFoundError,
    409: AlreadyExistsError, 412: PreconditionFailedError,
}


def _truncate(text: str) -> str:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= MAX_MESSAGE_BYTES:
        return text
    return raw[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")


def error_from_body(
    status: int, body: bytes | str | None, *, bucket_id: Optional[str] = None,
    key: Optional[str] = None, router: Optional[str] = None,
) -> MictlanXError:
    """Classify an error answer by ``detail.code`` first, then by HTTP status."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else (body or "")
    detail: Optional[dict[str, Any]] = None
    message: str = _truncate(text) or f"HTTP {status}"
    code: Optional[int] = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "detail" in parsed:
        raw_detail = parsed["detail"]
        if isinstance(raw_detail, dict):
            detail = raw_detail
            message = str(raw_detail.get("msg") or raw_detail.get("message") or message)
            raw_code = raw_detail.get("code")
            if isinstance(raw_code, int) and not isinstance(raw_code, bool):
                code = raw_code
        elif isinstance(raw_detail, str):
            message = _truncate(raw_detail)
            # Upstream routers answer a missing key with 500 and "404: ..." (client-api §3).
            if status == 500 and raw_detail.startswith("404:"):
                return NotFoundError(message, 404, 404, None, bucket_id=bucket_id, key=key, router=router)
        else:
            message = _truncate(json.dumps(raw_detail))
    cls: type[MictlanXError]
    if code is not None and code in _BY_CODE:
        cls = _BY_CODE[code]
        if cls is AlreadyExistsError and status == 412:
            cls = PreconditionFailedError
    else:
        cls = _BY_STATUS.get(status, UnknownError)
    return cls(message, status, code if code is not None else cls.default_code, detail,
               bucket_id=bucket_id, key=key, router=router)


def error_from_response(
    response: Any, *, bucket_id: Optional[str] = None, key: Optional[str] = None, router: Optional[str] = None,
) -> MictlanXError:
    """Translate an error ``requests.Response`` (reads its body, at most 64 KiB)."""
    try:
        body = response.content[: 64 * 1024]
    except Exception:  # a broken body still has a status worth reporting
        body = b""
    error = error_from_body(int(response.status_code), body, bucket_id=bucket_id, key=key, router=router)
    retry_after = response.headers.get("Retry-After") if getattr(response, "headers", None) is not None else None
    if retry_after is not None:
        # Read by the retry policy (protocol/policies.py) to honour the server's wait.
        error.detail = {**(error.detail or {}), "retry_after": retry_after}
    return error


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: ``__cause__``/``__context__``, exception args, urllib3 ``reason``."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 16:
        cur = pending.pop()
        if any(cur is s for s in seen):
            continue
        seen.append(cur)
        linked = [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return seen


def _certificate_did_not_verify(causes: list[BaseException]) -> bool:
    """Whether the TLS handshake failed on the server's certificate (not on the connection)."""
    return any(isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cause)
               for cause in causes)


def error_from_exception(
    exc: BaseException, *, bucket_id: Optional[str] = None, key: Optional[str] = None,
    router: Optional[str] = None,
) -> MictlanXError:
    """Translate a ``requests``/``urllib3`` exception; ``MictlanXError`` passes through unchanged."""
    if isinstance(exc, MictlanXError):
        return exc
    # Imported here so the module stays importable by the servers without requests.
    import requests
    from urllib3.exceptions import EmptyPoolError, NameResolutionError

    text = str(exc) or type(exc).__name__
    causes = _causes(exc)
    cls: type[MictlanXError]
    if any(isinstance(e, EmptyPoolError) for e in causes):
        cls, text = RequestTimeoutError, f"connection pool exhausted: {text}"
    elif isinstance(exc, (requests.exceptions.Timeout, TimeoutError)):
        cls = RequestTimeoutError
    elif any(isinstance(e, NameResolutionError) for e in causes):
        cls = DNSResolutionError
    elif isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        cls = UpstreamProtocolError
    elif isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError, ssl.SSLError)):
        cls = TLSVerificationError if _certificate_did_not_verify(causes) else ConnectFailedError
        text = network_text(exc, causes, text)  # issue 14: the user's words, not urllib3's
    elif isinstance(exc, OSError):
        cls = LocalStorageError
    else:
        cls, text = UnknownError, f"{type(exc).__name__}: {text}"
    err = cls(text, bucket_id=bucket_id, key=key, router=router)
    err.__cause__ = exc
    return err
