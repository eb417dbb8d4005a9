"""What ``Client`` builds once, at construction: its routers and its log handlers (client-api §8.1, §8.4)."""

from __future__ import annotations

import logging
import os
from logging.handlers import TimedRotatingFileHandler
from typing import Any, Dict, List, Optional, Sequence, Union

from ..protocol import uri as uri_module
from ..protocol.errors import ValidationError
from ..protocol.router import Router
from ..protocol.timeouts import Timeout

__all__ = ["routers_for", "log_handlers"]


def routers_for(uri: Union[str, Sequence[Router]], timeout: Timeout, verify: Any,
             pool_maxsize: int, token: Optional[str] = None) -> List[Router]:
    """One ``Router`` per distinct base URL, each with a pool sized for every caller.

    ``token`` (when given) is every router's bearer token; otherwise each router keeps the
    URI's ``token=`` (or the given ``Router``'s own ``token``).
    """
    if token is not None and (not isinstance(token, str) or not token):
        raise ValidationError("token must be a non-empty str")
    if isinstance(uri, str):
        endpoints = uri_module.parse(uri, default_protocol="https")
        routers = [Router(e.id or "", e.host, e.port, e.protocol, e.http2, e.api_version, path_prefix=e.path_prefix,
                          timeout=timeout, verify=verify, pool_maxsize=pool_maxsize,
                          token=token if token is not None else e.token) for e in endpoints]
    elif isinstance(uri, Sequence) and uri and all(isinstance(r, Router) for r in uri):
        routers = [Router(r.router_id, r.ip_addr, r.port, r.protocol, False, r.api_version, path_prefix=r.path_prefix,
                          timeout=timeout, verify=verify, pool_maxsize=pool_maxsize,
                          token=token if token is not None else r.token)
                   for r in uri if isinstance(r, Router)]
    else:
        raise ValidationError(f"uri must be a MictlanX URI or a list of Router, not {uri!r}")
    unique: Dict[str, Router] = {}
    for router in routers:
        unique.setdefault(router.base_url(), router)
    return list(unique.values())


def log_handlers(logger: logging.Logger, client_id: str, debug: bool, path: Optional[str], when: str,
                 interval: int, backups: int) -> List[logging.Handler]:
    """Add this client's handlers to ``logger`` (``debug``: stderr at DEBUG; ``path``: a rotating
    file ``{path}/{client_id}.log``, its directory created 0o755) and return them, so ``close()``
    removes exactly these."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handlers: List[logging.Handler] = []
    if debug:
        handler: logging.Handler = logging.StreamHandler()
        handler.setLevel(logging.DEBUG)
        logger.setLevel(logging.DEBUG)
        handlers.append(handler)
    if path is not None:
        os.makedirs(path, mode=0o755, exist_ok=True)
        handler = TimedRotatingFileHandler(os.path.join(path, f"{client_id}.log"), when=when, interval=interval,
                                           backupCount=backups, delay=True)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        handlers.append(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return handlers
