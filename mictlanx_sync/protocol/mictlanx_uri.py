"""``MictlanXURI``: MictlanX URIs (§P6) to and from ``Router`` and ``Peer`` objects.

The grammar lives in the pure :mod:`~mictlanx_sync.protocol.uri` module (the only parser
the servers use); this class turns its endpoint records into client objects.

>>> [r.base_url() for r in MictlanXURI.parse("mictlanx://r0@h.ex/pfx:8443/?protocol=https")]
['https://h.ex:8443/pfx']
>>> MictlanXURI.build(MictlanXURI.parse("mictlanx://r0@10.0.0.5:60666/?protocol=http"))
'mictlanx://r0@10.0.0.5:60666/?protocol=http&api_version=4&http2=0'
"""

from __future__ import annotations

from typing import Any, List, Sequence, Union

from . import uri
from .errors import ValidationError
from .peer import Peer
from .router import Router

__all__ = ["MictlanXURI"]


class MictlanXURI:
    """Parse and build MictlanX URIs; every failure raises ``ValidationError`` (a ``ValueError``)."""

    @staticmethod
    def parse(mictlanx_uri: str, **kwargs: Any) -> List[Router]:
        """The routers named by the URI (default protocol ``https``); ``kwargs`` go to ``Router``.

        The URI's ``token=`` is each router's bearer token, unless ``kwargs`` has ``token``.
        """
        return [
            Router(e.id, e.host, e.port, e.protocol, e.http2, e.api_version, path_prefix=e.path_prefix,
                   **{"token": e.token, **kwargs})
            for e in uri.parse(mictlanx_uri, default_protocol="https")
        ]

    @staticmethod
    def parse_peers(mictlanx_uri: str, **kwargs: Any) -> List[Peer]:
        """The peers named by the URI (default protocol ``http``); ``kwargs`` go to ``Peer``.

        The URI's ``token=`` is each peer's bearer token, unless ``kwargs`` has ``token``.
        """
        return [
            Peer(e.id, e.host, e.port, e.protocol, e.api_version, path_prefix=e.path_prefix,
                 **{"token": e.token, **kwargs})
            for e in uri.parse(mictlanx_uri, default_protocol="http")
        ]

    @staticmethod
    def build(items: Sequence[Union[Router, Peer]]) -> str:
        """``mictlanx://id@host:port,…/?protocol=P&api_version=4&http2=0|1``.

        Raises ``ValidationError`` for an empty list, or items that differ in protocol,
        api_version or http2.
        """
        endpoints = []
        for item in items:
            if isinstance(item, Router):
                ident, http2 = item.router_id, item.http2
            elif isinstance(item, Peer):
                ident, http2 = item.peer_id, False
            else:
                raise TypeError(f"expected Router or Peer items, not {type(item).__name__}")
            endpoints.append(uri.Endpoint(ident or None, item.ip_addr, item.port, item.path_prefix, item.protocol,
                                          item.api_version, http2, getattr(item, "token", None)))
        if not endpoints:
            raise ValidationError("cannot build a MictlanX URI from no items")
        return uri.build(endpoints)
