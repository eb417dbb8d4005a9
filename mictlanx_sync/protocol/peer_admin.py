"""The stats, inventory and administration endpoints of ``Peer`` (P13–P21, P23).

What operators and the router's registry call, not the object data path: disk use,
the ball inventory, node registration, pending tasks and health. ``Peer`` inherits
them from :class:`PeerAdminEndpoints`, so :mod:`.peer` holds only the object endpoints
(P1–P12, P22). Every method returns ``Result`` and mirrors upstream's ``AsyncPeer``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from .errors import MictlanXError, ResponseFormatError
from .ids import validate_id, validate_task_id
from .models import (
    BallBasicData,
    BallsLenResponse,
    GetUFSResponse,
    PeerCurrentState,
    PeerHealthResponse,
    PeerStatsResponse,
    StoragePeerResponse,
    parse_as,
)
from .params import paging_params, validate_after_composite
from .result import Err, Ok, Result
from .retrying import retry_with_upstream_options
from .service import ServiceClient, copy_headers, ok_value, validated
from .timeouts import TimeoutArg

__all__ = ["PeerAdminEndpoints"]


class PeerAdminEndpoints(ServiceClient):
    """P13–P21, P23 of one storage peer; a base of ``Peer``, not used alone."""

    # -- P13–P18: stats and inventory ----------------------------------------------------
    def get_stats(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, start: int = 0, end: int = 0,
        *, include_disabled: bool = False,
    ) -> Result[PeerStatsResponse, MictlanXError]:
        """P13 → ``PeerStatsResponse`` (the peer defaults an absent ``end`` to 100)."""
        return self._send("GET", "/stats", PeerStatsResponse, params=paging_params(start, end, None, include_disabled),
                          headers=copy_headers(headers), timeout=timeout)

    def get_ufs(
        self, timeout: TimeoutArg = 120, headers: Optional[Dict[str, str]] = None,
    ) -> Result[GetUFSResponse, MictlanXError]:
        """P14 → ``GetUFSResponse``."""
        return self._send("GET", "/stats/ufs", GetUFSResponse, headers=copy_headers(headers), timeout=timeout)

    def get_ufs_with_retry(
        self, timeout: TimeoutArg = 60, headers: Optional[Dict[str, str]] = None, tries: int = 100,
        delay: float = 1, max_delay: float = 5, jitter: bool = False, backoff: float = 1,
        logger: Optional[logging.Logger] = None,
    ) -> Result[GetUFSResponse, MictlanXError]:
        """P14 retried (``tries`` total attempts) on transport errors and 5xx; the last result."""
        return retry_with_upstream_options(lambda: self.get_ufs(timeout, headers), tries=tries, delay=delay,
                                           max_delay=max_delay, jitter=jitter, backoff=backoff, logger=logger,
                                           describe=f"get_ufs {self.base_url()}")

    def get_balls(
        self, start: int = 0, end: int = 0, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, *,
        after: Optional[str] = None, include_disabled: bool = False,
    ) -> Result[List[BallBasicData], MictlanXError]:
        """P15 → ``List[BallBasicData]``; ``after`` is ``"bucket_id@key"``."""
        bad = validated(lambda: validate_after_composite(after))
        if bad is not None:
            return bad
        return self._send("GET", "/xballs", List[BallBasicData],
                          params=paging_params(start, end, after, include_disabled),
                          headers=copy_headers(headers), timeout=timeout)

    def get_all_ball_sizes(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, start: int = 0, end: int = 0,
        *, after: Optional[str] = None, include_disabled: bool = False,
    ) -> Result[List[BallBasicData], MictlanXError]:
        """P16 (``[[bucket_id, key, size]]``) → ``List[BallBasicData]``."""
        bad = validated(lambda: validate_after_composite(after))
        if bad is not None:
            return bad
        result = self._send("GET", "/xballs/size", List[List[Any]],
                            params=paging_params(start, end, after, include_disabled),
                            headers=copy_headers(headers), timeout=timeout)
        if isinstance(result, Err):
            return result
        rows = ok_value(result)
        try:
            out = []
            for row in rows:
                if len(row) != 3:
                    raise ResponseFormatError(f"expected [bucket_id, key, size], got {row!r}")
                out.append(parse_as(BallBasicData, {"bucket_id": row[0], "key": row[1], "size": row[2]}))
            return Ok(out)
        except ResponseFormatError as exc:
            return Err(exc)

    def get_balls_len(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, *, include_disabled: bool = False,
    ) -> Result[int, MictlanXError]:
        """P17 → ``int``."""
        result = self._send("GET", "/balls/len", BallsLenResponse,
                            params={"include_disabled": "1"} if include_disabled else None,
                            headers=copy_headers(headers), timeout=timeout)
        return Ok(ok_value(result).len) if isinstance(result, Ok) else result

    def get_state(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120, start: int = 0, end: int = 0,
        *, include_disabled: bool = False,
    ) -> Result[PeerCurrentState, MictlanXError]:
        """P18 → ``PeerCurrentState``."""
        return self._send("GET", "/peers/state", PeerCurrentState,
                          params=paging_params(start, end, None, include_disabled),
                          headers=copy_headers(headers), timeout=timeout)

    # -- P19–P21, P23: administration ----------------------------------------------------
    def add_peer(
        self, id: str, disk: int, memory: int, ip_addr: str, port: int, weight: float, used_disk: int = 0,
        used_memory: int = 0, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 3600, *,
        protocol: Optional[str] = None,
    ) -> Result[StoragePeerResponse, MictlanXError]:
        """P19: register a node → ``StoragePeerResponse``."""
        bad = validated(lambda: validate_id(id, "id"))
        if bad is not None:
            return bad
        body: Dict[str, Any] = {"id": id, "disk": disk, "memory": memory, "ip_addr": ip_addr, "port": port,
                                "weight": weight, "used_disk": used_disk, "used_memory": used_memory}
        if protocol is not None:
            body["protocol"] = protocol
        return self._send("POST", "/nodes", StoragePeerResponse, json_body=body, headers=copy_headers(headers),
                          timeout=timeout)

    def add_peer_with_retry(
        self, id: str, disk: int, memory: int, ip_addr: str, port: int, weight: float, used_disk: int = 0,
        used_memory: int = 0, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 3600,
        tries: int = 100, delay: float = 1, max_delay: float = 5, jitter: bool = False, backoff: float = 1,
        logger: Optional[logging.Logger] = None, *, protocol: Optional[str] = None,
    ) -> Result[StoragePeerResponse, MictlanXError]:
        """P19 retried like :meth:`get_ufs_with_retry`."""
        return retry_with_upstream_options(
            lambda: self.add_peer(id, disk, memory, ip_addr, port, weight, used_disk, used_memory, headers, timeout,
                                  protocol=protocol),
            tries=tries, delay=delay, max_delay=max_delay, jitter=jitter, backoff=backoff, logger=logger,
            describe=f"add_peer {self.base_url()}")

    def flush_tasks(
        self, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """P20: drop every pending task → ``True``."""
        return self._send("DELETE", "/tasks", headers=copy_headers(headers), timeout=timeout)

    def cancel_task(
        self, task_id: str, headers: Optional[Dict[str, str]] = None, timeout: TimeoutArg = 120,
    ) -> Result[bool, MictlanXError]:
        """P23: cancel one pending task → ``True`` (404 when unknown)."""
        bad = validated(lambda: validate_task_id(task_id))
        if bad is not None:
            return bad
        return self._send("DELETE", f"/tasks/{task_id}", headers=copy_headers(headers), timeout=timeout)

    def health(self, timeout: TimeoutArg = 5) -> Result[PeerHealthResponse, MictlanXError]:
        """P21 → ``PeerHealthResponse``."""
        return self._send("GET", "/health", PeerHealthResponse, api=False, timeout=timeout)
