"""Read grants: a router's signed permission to read one version of one ball from a peer.

Made by the router for a direct read (:mod:`mictlanx_sync.protocol.direct`), checked by a
token-protected peer in place of the bearer token. The grant is an HMAC-SHA256 under the peer
token of ``GET``, the request path, the version and the expiry (Unix seconds), so it opens
exactly that path at exactly that version, for ``GRANT_TTL`` seconds, and nothing else; the
peer serves the version the grant names, whatever the request's own headers say.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Optional
from urllib.parse import parse_qs, urlencode

from ..protocol.direct import EXPIRES_PARAM, GRANT_PARAM, VERSION_PARAM

__all__ = ["GRANT_TTL", "grant_query", "granted_version"]

#: Seconds a grant stays valid: enough to open the stream (the body may take longer: a grant
#: is checked when the request arrives).
GRANT_TTL = 60


def _signature(token: str, path: str, version: str, expires: int) -> str:
    message = f"GET\n{path}\n{version}\n{expires}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def grant_query(token: str, path: str, version: str, now: Optional[float] = None) -> str:
    """The query string granting a read of ``path`` at ``version`` (``""``: an unversioned ball)."""
    expires = int(now if now is not None else time.time()) + GRANT_TTL
    return urlencode({VERSION_PARAM: version, EXPIRES_PARAM: str(expires),
                      GRANT_PARAM: _signature(token, path, version, expires)})


def granted_version(token: str, method: str, path: str, query_string: bytes,
                    now: Optional[float] = None) -> Optional[str]:
    """The version a valid grant in ``query_string`` opens ``path`` at, or None (no grant, a
    wrong signature, expired, or not a GET/HEAD)."""
    if method not in ("GET", "HEAD") or not query_string:
        return None
    try:
        query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    values = [query.get(name, []) for name in (VERSION_PARAM, EXPIRES_PARAM, GRANT_PARAM)]
    if any(len(v) != 1 for v in values):
        return None
    version, expires_text, signature = (v[0] for v in values)
    if not expires_text.isdigit() or len(expires_text) > 12:
        return None
    expires = int(expires_text)
    current = now if now is not None else time.time()
    if expires < current or expires > current + 2 * GRANT_TTL:  # expired, or not one of ours
        return None
    if not hmac.compare_digest(signature, _signature(token, path, version, expires)):
        return None
    return version
