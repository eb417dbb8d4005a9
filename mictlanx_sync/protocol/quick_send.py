"""One request on a ``Transport``'s session, without ``Session.request``'s per-call work (issue 13).

``Session.request`` costs about a third of a small request's client CPU: it merges seven
settings through ``requests.utils.to_key_val_list`` (each a ``runtime_checkable`` Protocol
``isinstance`` with requests 2.34, tens of µs apiece), builds and merges cookie jars, reads
the environment's proxy settings, and resolves redirects and hooks. None of that can change
what a :class:`~.transport.Transport` session sends: its cookie policy rejects every cookie,
``trust_env`` is off, it has no hooks, no auth object, no params and no proxies, and every
call passes ``allow_redirects=False`` with an explicit ``verify``.

:func:`send` therefore does only what remains: the session's headers merged with the call's
(a ``None`` value removes one, as ``requests.sessions.merge_setting`` does), a
``PreparedRequest`` prepared by requests itself (URL quoting, params, header validation, body
and ``Content-Length`` / chunked framing exactly as before), and the mounted adapter's
``send`` (its pool, TLS settings and exception translation unchanged). The answer is the same
``requests.Response``, opened with ``stream=True`` as ``Transport.request`` always asked.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import requests
from requests.structures import CaseInsensitiveDict

__all__ = ["send"]


def send(session: requests.Session, method: str, url: str, *, params: Optional[Mapping[str, Any]],
         headers: Mapping[str, Optional[str]], data: Any, timeout: tuple[float, float],
         verify: Union[bool, str]) -> requests.Response:
    """Send one request as ``session.request(..., stream=True, allow_redirects=False)`` would."""
    merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict()
    merged.update(session.headers)
    for name, value in headers.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    prepared = requests.PreparedRequest()
    prepared.prepare(method=method.upper(), url=url, headers=merged, data=data or {}, params=params or {})
    adapter = session.get_adapter(url=str(prepared.url))
    return adapter.send(prepared, stream=True, timeout=timeout, verify=verify, cert=None, proxies={})
