"""``Client``: the blocking high-level MictlanX client (client-api §8).

``Client`` is one class; this module holds its construction, lifecycle and logging. Its
operations are inherited, one module per concern:

- :mod:`.client_writes`: ``put``, ``put_file``, ``put_chunks``, ``put_single_chunk``, ``put_bulk``, ``await_bulk``;
- :mod:`.client_reads`: ``get``, ``get_to_file``, ``get_chunks``, ``get_chunk``;
- :mod:`.client_buckets`: ``get_metadata*``, ``get_bucket_metadata``, ``get_chunks_by_bucket_id``, ``delete*``;
- :mod:`.client_base`: the state and helpers they share.

>>> from mictlanx_sync import Client, LocalVSS
>>> with LocalVSS() as vss, Client(vss.uri, cache_path=None, capacity_storage="0") as client:  # doctest: +SKIP
...     client.put("bucket", "greeting", b"hello").unwrap()
...     bytes(client.get("bucket", "greeting").unwrap().data)
True
b'hello'
"""

from __future__ import annotations

import logging
import os
import uuid
from logging.handlers import TimedRotatingFileHandler
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..protocol import uri as uri_module
from ..protocol.direct import DIRECT_FIRST_BYTE_TIMEOUT
from ..protocol.errors import ValidationError
from ..protocol.policies import BreakerPolicy, RetryPolicy
from ..protocol.router import Router
from ..protocol.timeouts import DEFAULT_CONNECT_TIMEOUT, TimeoutArg, resolve_timeout
from .bulk import BulkRunner
from .cache import ChunkCache
from .client_buckets import ClientBuckets
from .client_reads import ClientReads
from .client_writes import ClientWrites
from .delete_order import guard_delete_order
from .dispatch import Dispatcher
from .executor import BoundedExecutor
from .lifecycle import Lifecycle
from .object_read import ObjectReader
from .operation import named_operation
from .options import inline_limit, positive_int, positive_seconds
from .writes import Writer

__all__ = ["Client"]

_DEFAULT_BREAKER = BreakerPolicy()


class Client(ClientWrites, ClientReads, ClientBuckets):
    """The blocking MictlanX client: chunked, parallel, retried, guarded and cached.

    **Thread safety.** One ``Client`` may be shared by every thread of a process (Flask,
    Django, thread pools); every method is thread-safe. After ``os.fork()`` the child's
    first call rebuilds sessions, pools, locks and breakers and reopens the cache.

    **Memory.** Chunk buffers in flight are bounded client-wide by ``max_workers`` x
    ``chunk_size``, whatever the number of callers; ``get`` also holds the object itself.

    **Errors.** Every I/O method returns ``Ok(value)`` or ``Err(MictlanXError)``; ``unwrap()``
    raises the typed error. Only constructor arguments and ``get_chunks`` raise.

    **Small objects.** Chunks of at most ``inline_max`` bytes (keyword-only, a size string or
    int, default 64 KiB, at most 512 KiB; 0 turns it off) travel inside their metadata
    request: a small object is read in one request and written in two instead of three or
    four (docs/protocol-extensions.md). Servers without the extension get the plain protocol.

    **Large chunks skip the router.** With ``direct_reads`` (keyword-only, default True),
    chunks of 1 MiB or more are read straight from the peer the router names (a 307 the
    router sends only to clients that ask), through pooled connections and verified as
    always; a peer this process cannot reach, or that has not answered within
    ``direct_timeout`` seconds (keyword-only, default 3; connect and first byte), is read
    through the router instead (docs/protocol-extensions.md §3).

    **Authentication.** ``token`` (keyword-only) is sent as ``Authorization: Bearer <token>``
    on every request to every router; without it, the URI's ``token=`` query is used. A
    missing or wrong token gives ``AuthenticationError`` (401, never retried).

    Example::

        with Client("mictlanx://mictlanx-router-0@localhost:60666/?protocol=http") as client:
            client.put("b", "k", b"data").unwrap()
            data = client.get("b", "k").unwrap().data.tobytes()
    """

    def __init__(
        self, uri: Union[str, Sequence[Router]], client_id: Optional[str] = None, debug: bool = False,
        max_workers: int = 12, log_output_path: Optional[str] = None, log_when: str = "m", log_interval: int = 30,
        eviction_policy: str = "LRU", capacity_storage: Union[str, int] = "1GB", verify: Any = True, *,
        cache_path: Optional[str] = None, timeout: TimeoutArg = (5.0, 120.0),
        retry: Optional[RetryPolicy] = None, breaker: Optional[BreakerPolicy] = _DEFAULT_BREAKER,
        progress: Optional[bool] = None, load_balancing: str = "LEAST_INFLIGHT", log_backup_count: int = 7,
        max_bulk_workers: int = 4, token: Optional[str] = None, inline_max: Union[str, int] = "64KiB",
        direct_reads: bool = True, direct_timeout: float = DIRECT_FIRST_BYTE_TIMEOUT,
    ) -> None:
        self.client_id = client_id if client_id is not None else f"client-{uuid.uuid4().hex[:8]}"
        self.max_workers = positive_int("max_workers", max_workers)
        self.max_bulk_workers = positive_int("max_bulk_workers", max_bulk_workers)
        self.verify = verify
        self.timeout = resolve_timeout(timeout, (DEFAULT_CONNECT_TIMEOUT, 120.0))
        self.progress = progress
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy or None")
        if breaker is not None and not isinstance(breaker, BreakerPolicy):
            raise TypeError("breaker must be a BreakerPolicy or None")
        self.logger = logging.getLogger(f"mictlanx_sync.client.{self.client_id}")
        self._handlers: list[logging.Handler] = []
        pool_maxsize = max(16, self.max_workers + self.max_bulk_workers + 16)
        self.routers = _routers(uri, self.timeout, verify, pool_maxsize, token)
        self._cache = ChunkCache(cache_path, capacity_storage, eviction_policy, logger=self.logger)
        # Composed, each with one job: the open/closed state (and what a fork rebuilds), the one
        # way a request is sent, the transfer pool with its buffer budget, the bulk pool.
        self._lifecycle = Lifecycle()
        self._lifecycle.on_fork(self._cache.reopen)
        self._dispatcher = Dispatcher(self.routers, retry=retry or RetryPolicy(), breaker=breaker,
                                      load_balancing=load_balancing, logger=self.logger, lifecycle=self._lifecycle)
        self._executor = BoundedExecutor(self.max_workers, self.client_id, self._lifecycle)
        self.inline_max = inline_limit(inline_max)
        self._writer = Writer(self._dispatcher, self._executor, self.logger, inline_max=self.inline_max)
        self._reader = ObjectReader(self._dispatcher, self._executor, self._cache, self.logger,
                              direct_reads=bool(direct_reads),
                              direct_timeout=positive_seconds("direct_timeout", direct_timeout))
        self._bulk = BulkRunner(self._lifecycle, self.max_bulk_workers, self.client_id, self)
        self._configure_logging(debug, log_output_path, log_when, log_interval, log_backup_count)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def cache(self) -> Any:
        """The ``diskcache.Cache`` behind the chunk cache, or ``None`` when disabled."""
        return self._cache.disk if self._cache.enabled else None

    @property
    def retry(self) -> RetryPolicy:
        return self._dispatcher.retry

    def breaker_state(self, router: Router) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` for one of :attr:`routers`."""
        return str(self._dispatcher.breaker(router).state)

    def close(self, wait: bool = True) -> None:
        """Stop the pools, close sessions and cache, remove this client's log handlers. Idempotent."""
        if not self._lifecycle.close():  # every call in flight ends now (its sockets are shut)
            return
        self._bulk.shutdown(wait)
        self._executor.shutdown(wait)
        self._dispatcher.close()
        self._cache.close()
        for handler in self._handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self._handlers.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.client_id!r}, routers={[r.base_url() for r in self.routers]})"

    def _configure_logging(self, debug: bool, path: Optional[str], when: str, interval: int, backups: int) -> None:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        if debug:
            handler: logging.Handler = logging.StreamHandler()
            handler.setLevel(logging.DEBUG)
            self.logger.setLevel(logging.DEBUG)
            self._handlers.append(handler)
        if path is not None:
            os.makedirs(path, mode=0o755, exist_ok=True)
            handler = TimedRotatingFileHandler(os.path.join(path, f"{self.client_id}.log"), when=when,
                                               interval=interval, backupCount=backups, delay=True)
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO)
            self._handlers.append(handler)
        for handler in self._handlers:
            handler.setFormatter(formatter)
            self.logger.addHandler(handler)


# Each public operation names itself (``put photos/cat``) for the retry lines it logs.
_USER_OPERATIONS = (
    "put", "put_file", "put_chunks", "put_single_chunk", "get", "get_to_file", "get_chunk",
    "get_metadata_by_key", "get_metadata", "get_chunks_by_bucket_id", "get_bucket_metadata",
    "delete", "delete_by_key", "delete_bucket",
)
for _name in _USER_OPERATIONS:
    setattr(Client, _name, named_operation(_name, getattr(Client, _name)))
# A positional delete from the user is checked for swapped arguments first (issue 14 §1).
for _name in ("delete", "delete_by_key"):
    setattr(Client, _name, guard_delete_order(getattr(Client, _name)))
del _name


def _routers(uri: Union[str, Sequence[Router]], timeout: Tuple[float, float], verify: Any,
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
