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
``PreparedRequest`` prepared by requests' own steps (URL quoting, params, header validation;
a bytes body framed with ``Content-Length`` as ``prepare_body`` does, any other body by
``prepare_body`` itself; no cookie or URL-credential steps, which find nothing here), and the mounted adapter's
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
    prepared = _prepare(method.upper(), url, merged, data or {}, params or {})
    adapter = session.get_adapter(url=str(prepared.url))
    return adapter.send(prepared, stream=True, timeout=timeout, verify=verify, cert=None, proxies={})


def _prepare(method: str, url: str, headers: CaseInsensitiveDict[Any], data: Any,
             params: Any) -> requests.PreparedRequest:
    """``PreparedRequest.prepare`` for these sessions: without cookies (the jar is always empty)
    and, for a URL without credentials in it, without ``prepare_auth``; a bytes body (or none)
    framed here exactly as ``prepare_body`` would, without its per-call Protocol checks."""
    prepared = requests.PreparedRequest()
    empty = isinstance(data, dict) and not data  # what ``data or {}`` made of no body
    if "@" in url or not (empty or (isinstance(data, bytes) and data)):
        prepared.prepare(method=method, url=url, headers=headers, data=data, params=params)
        return prepared
    prepared.prepare_method(method)
    prepared.prepare_url(url, params)
    prepared.prepare_headers(headers)
    if empty:  # no body: requests sends Content-Length: 0 unless GET or HEAD
        prepared.body = None
        if method not in ("GET", "HEAD") and prepared.headers.get("Content-Length") is None:
            prepared.headers["Content-Length"] = "0"
    else:
        prepared.body = data
        prepared.headers["Content-Length"] = str(len(data))
    prepared.prepare_hooks(None)
    return prepared
