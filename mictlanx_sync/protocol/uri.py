"""The MictlanX URI (protocol §P6): a pure parser and builder, no I/O.

``mictlanx://r0@host:60666,r1@host2:60667/?protocol=http&api_version=4`` names one or
more endpoints. :func:`parse` yields plain :class:`Endpoint` records; the servers use
only this module, and ``MictlanXURI`` (I/O layer) turns records into ``Router``/``Peer``.

>>> [e.base_url for e in parse("mictlanx://r0@h.ex/pfx:8443/?protocol=https")]
['https://h.ex:8443/pfx']
"""

from __future__ import annotations

from typing import Iterable, Optional
from urllib.parse import parse_qs, quote

import attrs

from .errors import ValidationError
from .ids import validate_id

__all__ = ["SCHEME", "Endpoint", "parse", "build", "base_url"]

SCHEME = "mictlanx://"
_TRUE = {"1", "true", "yes", "on"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def base_url(protocol: str, host: str, port: int, path_prefix: str = "") -> str:
    """``{protocol}://{host}[:port]{path_prefix}``; IPv6 in brackets; default ports omitted."""
    shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    omit = port in (0, -1) or _DEFAULT_PORTS.get(protocol) == port
    return f"{protocol}://{shown_host}{'' if omit else f':{port}'}{path_prefix}"


@attrs.frozen
class Endpoint:
    """One ``[id@]host:port`` of a MictlanX URI, with the URI's shared options."""

    id: Optional[str]
    host: str
    port: int
    path_prefix: str = ""
    protocol: str = "http"
    api_version: int = 4
    http2: bool = False
    #: bearer token from the URI's ``token=`` query (sent as ``Authorization: Bearer``); never in repr
    token: Optional[str] = attrs.field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return base_url(self.protocol, self.host, self.port, self.path_prefix)

    def spec(self) -> str:
        """This endpoint written as a URI spec: ``id@host[/path]:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        ident = f"{self.id}@" if self.id else ""
        return f"{ident}{host}{self.path_prefix}:{self.port}"


def _parse_spec(spec: str, protocol: str, api_version: int, http2: bool, token: Optional[str] = None) -> Endpoint:
    ident: Optional[str] = None
    if "@" in spec:
        raw_id, spec = spec.split("@", 1)
        if raw_id:
            ident = validate_id(raw_id, "endpoint id")
    if ":" not in spec:
        raise ValidationError(f"missing port in URI spec {spec!r}")
    host, raw_port = spec.rsplit(":", 1)
    if not (raw_port.isascii() and raw_port.isdigit() and len(raw_port) <= 5):
        raise ValidationError(f"invalid port {raw_port!r} in URI spec {spec!r}")
    port = int(raw_port, 10)
    if not 1 <= port <= 65535:
        raise ValidationError(f"port out of range in URI spec {spec!r}")
    path_prefix = ""
    if host.startswith("[") and "]" in host:
        close = host.index("]")
        rest = host[close + 1:]
        if rest and not rest.startswith("/"):
            raise ValidationError(f"unexpected {rest!r} after the IPv6 address in URI spec {spec!r}")
        path_prefix = "/" + rest.strip("/") if rest.strip("/") else ""
        host = host[1:close]
    elif "/" in host:
        host, rest = host.split("/", 1)
        path_prefix = "/" + rest.strip("/")
    if not host:
        raise ValidationError(f"empty host in URI spec {spec!r}")
    return Endpoint(ident, host, port, path_prefix, protocol, api_version, http2, token)


def parse(uri: str, default_protocol: str = "https") -> list[Endpoint]:
    """Parse a MictlanX URI into endpoint records; raises ``ValidationError`` (a ``ValueError``)."""
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        raise ValidationError(f"a MictlanX URI starts with {SCHEME!r}: {uri!r}")
    main, _, query = uri[len(SCHEME):].partition("?")
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    protocol = params.get("protocol", default_protocol)
    if protocol not in ("http", "https"):
        raise ValidationError(f"protocol must be http or https, not {protocol!r}")
    api_version = 4
    if "api_version" in params:
        try:
            api_version = int(params["api_version"])
        except ValueError:
            raise ValidationError(f"invalid api_version {params['api_version']!r}") from None
        if api_version != 4:
            raise ValidationError(f"unsupported api_version {api_version} (only 4)")
    http2 = params.get("http2", "").lower() in _TRUE
    token = params.get("token") or None
    endpoints = []
    for raw in main.split(","):
        spec = raw.strip().strip("/")
        if spec:
            endpoints.append(_parse_spec(spec, protocol, api_version, http2, token))
    if not endpoints:
        raise ValidationError(f"no endpoint in URI {uri!r}")
    return endpoints


def build(endpoints: Iterable[Endpoint]) -> str:
    """The URI naming ``endpoints``; they must share protocol, api_version, http2 and token.

    A token is written as a final ``&token=...`` (percent-encoded).
    """
    items = list(endpoints)
    if not items:
        raise ValidationError("cannot build a MictlanX URI from no endpoints")
    options = {(e.protocol, e.api_version, e.http2, e.token) for e in items}
    if len(options) != 1:
        raise ValidationError("endpoints differ in protocol, api_version, http2 or token")
    protocol, api_version, http2, token = options.pop()
    specs = ",".join(e.spec() for e in items)
    uri = f"{SCHEME}{specs}/?protocol={protocol}&api_version={api_version}&http2={int(http2)}"
    return uri if token is None else f"{uri}&token={quote(token, safe='')}"
