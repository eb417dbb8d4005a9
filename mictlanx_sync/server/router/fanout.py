"""Parallel peer calls and the outcome rules of protocol §P4.3 and §P4.4.

A :class:`Reply` is one peer's answer: a status and parsed JSON body, or ``status=None``
for a transport error. :func:`missing` turns "nobody had it" into the right error row.

Every call is bounded (docs/reliability.md "Limits and timeouts"): ``peer_meta_timeout``
(default 2 s) for a whole metadata-sized call, or, for listings (``stream=True``), as the
longest silence while its answer arrives. A call that times out marks its peer unavailable at
once, and a call to a peer the registry marks unavailable is cancelled (``Registry.guard``).
:func:`fan_out_early` answers from the replies that decide the outcome: once a deciding reply
arrived, the peers still silent ``fanout_grace`` later are *late*: unavailable for this request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from ..asgi.errors import HTTPError
from .peer_client import PeerError
from .peers import PeerEntry
from .registry import PeerDown, PeerTimeout, Registry

log = logging.getLogger("mictlanx_sync.server.router")


@dataclass
class Reply:
    peer_id: str
    status: Optional[int]  # None: transport error
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    #: no answer within the fan-out's grace, or the call timed out or was cancelled because the
    #: peer was marked unavailable: unavailable for this request, not failed
    late: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def failed(self) -> bool:
        """A transport error or a 5xx: the peer could not answer (§P4.3)."""
        return self.status is None or self.status >= 500

    @property
    def code(self) -> Optional[int]:
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, dict) and isinstance(detail.get("code"), int):
            return int(detail["code"])
        return self.status

    @property
    def msg(self) -> str:
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, dict) and "msg" in detail:
            return str(detail["msg"])
        return self.error or f"HTTP {self.status}"

    def describe(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "status": self.status if self.status is not None else 502,
                "code": self.code if self.status is not None else 502, "msg": self.msg}


async def call(registry: Registry, entry: PeerEntry, method: str, path: str, *,
               params: Any = None, headers: Optional[Mapping[str, str]] = None, json_body: Any = None,
               content: Optional[bytes] = None, timeout: Optional[float] = None, stream: bool = False) -> Reply:
    """One request to ``entry`` (``path`` under ``/api/v4``); never raises for HTTP trouble.

    ``json_body`` is sent as httpx would (compact, UTF-8); ``content`` as raw bytes. ``timeout`` (seconds, default the
    registry's ``meta_timeout``) bounds the whole call, or with ``stream`` (listings, whose
    answers may be large) the connection and each wait for more of the answer. A timeout marks
    the peer unavailable at once. Sent by the registry's :class:`~.peer_client.PeerClient`.
    """
    body: Optional[bytes] = content  # raw bytes (``content``) or JSON (``json_body``)
    if json_body is not None:
        body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        headers = {"Content-Type": "application/json", **(headers or {})}
    limit = registry.meta_timeout if timeout is None else timeout
    try:
        exchange = registry.client.exchange(entry, method, f"/api/v4{path}", params=params, headers=headers,
                                            body=body, timeout=limit)
        answer = await registry.guard(entry, exchange, None if stream else limit)
    except (PeerTimeout, PeerDown) as exc:  # the peer is now marked unavailable
        return Reply(entry.peer_id, None, error=str(exc), late=True)
    except PeerError as exc:
        if exc.transport and "timed out" in str(exc) and registry.peers.get(entry.peer_id) is entry:
            registry.mark_down(entry, str(exc))
            return Reply(entry.peer_id, None, error=str(exc), late=True)
        if exc.transport:
            registry.mark_failure(entry)
        # A refused connection means nothing listens there: the peer is down, and for this
        # request it is unavailable (503/666, "not found while a peer is unavailable"), not a
        # peer that failed (502/503). The registry still needs its threshold to mark it down.
        return Reply(entry.peer_id, None, error=str(exc), late=exc.refused)
    return Reply(entry.peer_id, answer.status, parse_json(answer.content), answer.headers)


def parse_json(content: bytes) -> Any:
    """A peer answer's JSON body, or None (empty or not JSON)."""
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


async def fan_out(registry: Registry, entries: Iterable[PeerEntry], method: str, path: str,
                  **kwargs: Any) -> list[Reply]:
    """``call`` every entry concurrently; replies in the order of ``entries``."""
    targets = list(entries)
    return list(await asyncio.gather(*(call(registry, e, method, path, **kwargs) for e in targets)))


#: calls a fan-out stopped waiting for; kept referenced until they end (they are bounded)
_LATE: set[asyncio.Future] = set()


async def fan_out_early(registry: Registry, entries: Iterable[PeerEntry], method: str, path: str, *,
                        decides: Callable[[Reply], bool], grace: Optional[float] = None,
                        **kwargs: Any) -> list[Reply]:
    """``call`` every entry concurrently and answer early; replies in the order of ``entries``.

    Returns when every call ended, or ``grace`` seconds (default the registry's ``grace``) after
    the first reply for which ``decides`` is true. Calls still running then give
    ``Reply(status=None, late=True)`` and go on in the background until their own timeout (which
    marks their peer unavailable) or until the registry cancels them. Without a deciding reply
    the wait is bounded by the calls' timeouts alone.
    """
    targets = list(entries)
    if not targets:
        return []
    wait_grace = registry.grace if grace is None else grace
    tasks = [asyncio.ensure_future(call(registry, e, method, path, **kwargs)) for e in targets]
    loop = asyncio.get_running_loop()
    deadline: Optional[float] = None
    pending = set(tasks)
    try:
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break  # the grace is over
            if deadline is None and any(decides(t.result()) for t in done):
                deadline = loop.time() + wait_grace
    except BaseException:
        for task in pending:
            task.cancel()
        raise
    replies = []
    for entry, task in zip(targets, tasks, strict=True):
        if task.done():
            replies.append(task.result())
            continue
        _LATE.add(task)
        task.add_done_callback(_LATE.discard)
        replies.append(Reply(entry.peer_id, None, error=f"no answer within the {wait_grace:g} s fan-out grace",
                             late=True))
    if len(pending):
        log.info("%s %s: answered without %s (late)", method, path, sorted(r.peer_id for r in replies if r.late))
    return replies


def owed_peers(registry: Registry, replies: Iterable[Reply]) -> list[str]:
    """The peers a fanned-out delete or commit must be replayed on (a pending record each):
    every registered peer that did not answer it, i.e. those it was not sent to (unavailable
    when the fan-out started: one may have come back, and been replayed to, while it ran, so
    the registry's state at the end is not the test) and those that could not answer (a
    transport error, a 5xx, no answer within the grace: not necessarily marked down yet, and
    they may have missed the change). A 4xx is a refusal a replay would meet again: not owed."""
    answered = {r.peer_id for r in replies if not r.failed}
    return sorted(set(registry.peers) - answered)


def no_peer_available(**extra: Any) -> HTTPError:
    return HTTPError(503, 666, "No available peers.", **extra)


def missing(registry: Registry, failed: list[str], what: str, *, fail_code: int = 503,
            late: Iterable[str] = (), **extra: Any) -> HTTPError:
    """The §P4.3 outcome when no available peer returned the data (``late`` peers, which did not
    answer within a fan-out's grace, count as unavailable)."""
    if failed:
        return HTTPError(502, fail_code, f"{what}: peers failed", failed_peers=sorted(failed), **extra)
    unavailable = sorted(set(registry.unavailable_ids()) | set(late))
    if not registry.available_ids():
        return no_peer_available(unavailable_peers=unavailable, **extra)
    if unavailable:
        return HTTPError(503, 666, f"{what} not found on the available peers; some peers are unavailable",
                         unavailable_peers=unavailable, **extra)
    return HTTPError(404, 404, f"{what} not found", **extra)


def combine_failures(failures: list[Reply], **extra: Any) -> HTTPError:
    """The router's answer when replicas of a write failed (§P4.4)."""
    errors = [r.describe() for r in failures]
    for reply in failures:
        if reply.status == 400 and reply.code == 501:
            detail = reply.body.get("detail", {}) if isinstance(reply.body, dict) else {}
            integrity = {k: detail[k] for k in ("expected_size", "received_size", "expected_checksum",
                                                "received_checksum") if k in detail}
            return HTTPError(400, 501, reply.msg, errors=errors, **integrity, **extra)
    kinds = {(r.status, r.code) for r in failures}
    if len(kinds) == 1:
        status, code = next(iter(kinds))
        if status is not None and 400 <= status < 500 and code is not None:
            return HTTPError(status, code, failures[0].msg, errors=errors, **extra)
    if any(r.status == 507 for r in failures):
        return HTTPError(507, 502, "not enough capacity on a replica", errors=errors, **extra)
    return HTTPError(502, 502, "a replica write failed", errors=errors, **extra)
