"""Network failures in the user's words, not urllib3's (issue 14 §2).

``requests`` reports a refused connection as ``HTTPConnectionPool(host=…): Max retries
exceeded with url … (Caused by NewConnectionError(…))``: library internals, and "Max retries"
although the sessions never retry (the client's one retry layer does). :func:`network_text`
turns the common cases into one sentence that names the server and says what to do:

- connection refused: is the router running, and is the URI right;
- a TLS handshake answered in plain HTTP (``WRONG_VERSION_NUMBER``): routers default to
  https, add ``?protocol=http``;
- a certificate that does not verify: ``verify=`` a CA bundle;
- a name that does not resolve.

Anything else keeps the original text.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

__all__ = ["network_text"]

_RUN_HINT = ("is the router running there (`mictlanx-sync vss` starts a local one) and is the URI right "
             "(--uri or MICTLANX_URI)?")


def network_text(exc: BaseException, causes: Sequence[BaseException], text: str) -> str:
    """A plain sentence for a transport exception, or ``text`` when the case is not known."""
    where = _where(causes) or "the server"
    flat = " ".join(str(c) for c in causes)
    if "WRONG_VERSION_NUMBER" in flat or "wrong version number" in flat:
        return (f"TLS handshake with {where} failed: the server answered in plain HTTP. MictlanX URIs default to "
                f"https; for a plain-HTTP router (the local VSS) add ?protocol=http, e.g. "
                f"mictlanx://mictlanx-router-0@{where}/?protocol=http")
    if "CERTIFICATE_VERIFY_FAILED" in flat:
        return (f"the TLS certificate of {where} did not verify ({_reason(flat)}); pass verify= a CA bundle path "
                f"or an ssl.SSLContext that trusts it")
    if any(isinstance(c, ConnectionRefusedError) for c in causes) or "Connection refused" in flat:
        return f"cannot connect to {where}: connection refused; {_RUN_HINT}"
    if "Name or service not known" in flat or "nodename nor servname" in flat or "Failed to resolve" in flat:
        return f"cannot resolve the host of {where}; check the host name in the URI (--uri or MICTLANX_URI)"
    if "Connection reset" in flat or "RemoteDisconnected" in flat or "Connection aborted" in flat:
        return f"the connection to {where} was closed before an answer; the request will be retried if allowed"
    return text


def _where(causes: Sequence[BaseException]) -> Optional[str]:
    for cause in causes:
        for holder in (getattr(cause, "pool", None), getattr(cause, "conn", None)):
            host, port = getattr(holder, "host", None), getattr(holder, "port", None)
            if host:
                return f"{host}:{port}" if port else str(host)
    for cause in causes:
        match = re.search(r"host='([^']+)', port=(\d+)", str(cause))
        if match:
            return f"{match.group(1)}:{match.group(2)}"
    return None


def _reason(flat: str) -> str:
    match = re.search(r"certificate verify failed: ([^(\)]+)", flat)
    return match.group(1).strip() if match else "certificate verify failed"


