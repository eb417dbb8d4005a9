"""Fault injection for the peer and the router: an ASGI middleware, **off by default**.

It is installed only when a server is started with ``--faults SPEC`` or the environment
variable ``MICTLANX_FAULTS`` (an empty list ``[]`` is enough to enable it). Without either,
neither the middleware nor its admin route exists.

**Spec format.** JSON: a list of rules, or ``{"faults": [rules]}``. ``@path`` instead of
JSON text reads the spec from a file. Each rule is an object:

==================  ==========================================================================
field               meaning
==================  ==========================================================================
``route``           endpoint id (``"P5"``, ``"R11"``, ``"P21"``…) of protocol.md; optional
``method``          HTTP method (``"GET"``…); optional
``path``            regular expression searched in the request path; optional
``action``          ``delay`` | ``status`` | ``drop_before_first_byte`` |
                    ``drop_after_first_byte`` | ``truncate`` (required)
``count``           apply to the first N matching requests; absent or ``null``: every one
``skip``            let the first N matching requests through first (default 0)
``delay``           seconds to sleep before handling (``delay`` action: default 1.0;
                    allowed with every action)
``status``          ``status`` action: the HTTP status (default 503)
``code``            ``status`` action: ``detail.code`` (default: the status)
``msg``             ``status`` action: ``detail.msg`` (default ``"injected fault"``)
``headers``         ``status`` action: extra response headers (e.g. ``{"Retry-After": "1"}``)
``stage``           ``drop_before_first_byte``: ``"response"`` (default: the request is
                    processed, then the connection is closed before the response head) or
                    ``"request"`` (closed on arrival, the request is never processed)
``bytes``           ``truncate``: body bytes sent before the cut (default: half the
                    ``Content-Length``, at least 1 when the body is not empty)
``fix_length``      ``truncate``: rewrite ``Content-Length`` to ``bytes`` and end the
                    response normally, so it *looks* complete (default false: the
                    connection is closed with the declared length unmet)
==================  ==========================================================================

A rule with no ``route``, ``method`` or ``path`` matches every request. Rules are tried in
order; the first matching rule with applications left is applied (one fault per request).
``drop_after_first_byte`` sends the response head and exactly one body byte, then closes.

Example: ``[{"route": "R11", "action": "drop_after_first_byte", "count": 2}]``.

**Runtime changes.** When enabled, ``/_faults`` (no prefix) is served before any other
route: ``GET`` lists the rules with their ``matched`` and ``applied`` counters, ``POST``
replaces them with the JSON spec of the body (answering the new list), ``DELETE`` clears
them (204). Invalid specs answer 422/400. Faults never apply to ``/_faults`` itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .asgi.errors import ClientDisconnected, HTTPError, unprocessable
from .asgi.request import Request, RequestBody
from .asgi.responses import Response, empty, error_response, json_response
from .phase2 import DRAIN_CAP

log = logging.getLogger("mictlanx_sync.server.faults")

ADMIN_PATH = "/_faults"
ENV = "MICTLANX_FAULTS"
ACTIONS = ("delay", "status", "drop_before_first_byte", "drop_after_first_byte", "truncate")
MAX_SPEC = 1024 * 1024
_FIELDS = {"route", "method", "path", "action", "count", "skip", "delay", "status", "code", "msg", "headers",
           "stage", "bytes", "fix_length"}


@dataclass
class FaultRule:
    """One rule of the spec (see the module docstring) with its counters."""

    action: str
    route: Optional[str] = None
    method: Optional[str] = None
    path: Optional[str] = None
    count: Optional[int] = None
    skip: int = 0
    delay: float = 0.0
    status: int = 503
    code: Optional[int] = None
    msg: str = "injected fault"
    headers: dict[str, str] = field(default_factory=dict)
    stage: str = "response"
    bytes: Optional[int] = None
    fix_length: bool = False
    matched: int = 0
    applied: int = 0
    _regex: Optional[re.Pattern[str]] = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        for name in ("route", "method", "path", "count", "bytes"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.skip:
            out["skip"] = self.skip
        if self.delay:
            out["delay"] = self.delay
        if self.action == "status":
            out.update(status=self.status, code=self.code if self.code is not None else self.status, msg=self.msg)
            if self.headers:
                out["headers"] = dict(self.headers)
        if self.action == "drop_before_first_byte":
            out["stage"] = self.stage
        if self.action == "truncate":
            out["fix_length"] = self.fix_length
        out.update(matched=self.matched, applied=self.applied)
        return out

    def matches(self, method: str, path: str, endpoint: Optional[str]) -> bool:
        if self.route is not None and self.route != endpoint:
            return False
        if self.method is not None and self.method != method:
            return False
        return self._regex is None or self._regex.search(path) is not None

    def take(self) -> bool:
        """Count one matching request; True if the fault applies to it."""
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.count is not None and self.applied >= self.count:
            return False
        self.applied += 1
        return True


def _int(item: dict[str, Any], name: str, default: Optional[int], minimum: int) -> Optional[int]:
    value = item.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"fault rule field {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _rule(item: Any, index: int) -> FaultRule:
    if not isinstance(item, dict):
        raise ValueError(f"fault rule {index} must be an object")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ValueError(f"fault rule {index}: unknown fields {sorted(unknown)}")
    action = item.get("action")
    if action not in ACTIONS:
        raise ValueError(f"fault rule {index}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
    rule = FaultRule(action=action)
    for name in ("route", "method", "path", "msg"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"fault rule {index}: {name!r} must be a string")
    rule.route = item.get("route")
    rule.method = item["method"].upper() if item.get("method") else None
    if item.get("path") is not None:
        rule.path = item["path"]
        try:
            rule._regex = re.compile(item["path"])
        except re.error as exc:
            raise ValueError(f"fault rule {index}: invalid path regex: {exc}") from None
    rule.count = _int(item, "count", None, 0)
    rule.skip = _int(item, "skip", 0, 0) or 0
    rule.bytes = _int(item, "bytes", None, 0)
    delay = item.get("delay", 1.0 if action == "delay" else 0.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 3600:
        raise ValueError(f"fault rule {index}: 'delay' must be seconds in [0, 3600]")
    rule.delay = float(delay)
    status = _int(item, "status", 503, 100)
    if status is None or status > 599:
        raise ValueError(f"fault rule {index}: 'status' must be an HTTP status")
    rule.status = status
    rule.code = _int(item, "code", None, 0)
    rule.msg = item.get("msg") or rule.msg
    headers = item.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in headers.items()):
        raise ValueError(f"fault rule {index}: 'headers' must map strings to strings")
    rule.headers = dict(headers)
    stage = item.get("stage", "response")
    if stage not in ("request", "response"):
        raise ValueError(f"fault rule {index}: 'stage' must be 'request' or 'response'")
    rule.stage = stage
    rule.fix_length = bool(item.get("fix_length", False))
    return rule


def parse_spec(spec: Any) -> list[FaultRule]:
    """Rules from a spec: JSON text, ``@file``, or already decoded JSON. Raises ``ValueError``."""
    if isinstance(spec, (str, bytes)):
        text = spec.decode() if isinstance(spec, bytes) else spec
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        try:
            spec = json.loads(text) if text.strip() else []
        except ValueError as exc:
            raise ValueError(f"fault spec is not valid JSON: {exc}") from None
    if isinstance(spec, dict) and set(spec) == {"faults"}:
        spec = spec["faults"]
    if not isinstance(spec, list):
        raise ValueError("a fault spec is a JSON list of rules, or {\"faults\": [rules]}")
    return [_rule(item, i) for i, item in enumerate(spec)]


# --- the middleware --------------------------------------------------------------------------
def _transport(send: Callable[..., Any]) -> Any:
    """uvicorn's transport behind its ``send`` (a bound method of the request cycle)."""
    return getattr(getattr(send, "__self__", None), "transport", None)


async def _drop(send: Callable[..., Any], receive: Callable[..., Any]) -> None:
    """Close the client connection now and wait (bounded) until the server has noticed."""
    transport = _transport(send)
    if transport is None:
        raise ConnectionAbortedError("fault injection: connection dropped")
    transport.close()

    async def _gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(_gone(), 5.0)
    except asyncio.TimeoutError:
        pass


class FaultMiddleware:
    """Applies the configured faults; serves ``/_faults`` (see the module docstring)."""

    def __init__(self, app: Any, rules: list[FaultRule], endpoint_of: Callable[[dict], Optional[str]]) -> None:
        self.app = app
        self.rules = rules
        #: the endpoint id (``P5``, ``R11``) the served app routes a request to
        self.endpoint_of = endpoint_of

    async def __call__(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == ADMIN_PATH:
            await self._admin(scope, receive, send)
            return
        rule = self._select(scope)
        if rule is None:
            await self.app(scope, receive, send)
            return
        log.warning("injecting %s on %s %s", rule.action, scope["method"], path)
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.action == "delay":
            await self.app(scope, receive, send)
        elif rule.action == "status":
            drained = await RequestBody(receive).drain(DRAIN_CAP)
            code = rule.code if rule.code is not None else rule.status
            error = HTTPError(rule.status, code, rule.msg, rule.headers, injected=True)
            await error_response(error, close=not drained).send(send)
        elif rule.action == "drop_before_first_byte" and rule.stage == "request":
            await _drop(send, receive)
        else:
            await self._on_response(rule, scope, receive, send)

    def _select(self, scope: dict) -> Optional[FaultRule]:
        if not self.rules:
            return None
        method, path = scope["method"], scope.get("path", "")
        endpoint = self.endpoint_of(scope)
        for rule in self.rules:
            if rule.matches(method, path, endpoint) and rule.take():
                return rule
        return None

    async def _on_response(self, rule: FaultRule, scope: dict, receive: Callable[..., Any],
                           send: Callable[..., Any]) -> None:
        """Run the app; cut its response per ``rule`` (drops and truncation)."""
        state = {"cut": False, "left": 0}

        async def faulty_send(message: dict) -> None:
            if state["cut"]:
                return  # swallowed: the client connection is gone
            kind = message["type"]
            if kind == "http.response.start":
                if rule.action == "drop_before_first_byte":
                    state["cut"] = True
                    await _drop(send, receive)
                    return
                headers = list(message.get("headers", []))
                length = next((int(v) for k, v in headers if k.lower() == b"content-length"), None)
                if rule.action == "drop_after_first_byte":
                    state["left"] = 1
                else:
                    default = max(1, (length or 0) // 2) if length else 1
                    state["left"] = rule.bytes if rule.bytes is not None else default
                    if length is not None:
                        state["left"] = min(state["left"], length)
                    if rule.fix_length:
                        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                        headers.append((b"content-length", str(state["left"]).encode()))
                        message = {**message, "headers": headers}
                await send(message)
                return
            if kind != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            left = state["left"]
            if len(body) < left or (len(body) == left and not more):
                state["left"] = left - len(body)
                await send(message)  # before the cut (or the response ends right at it)
                return
            state["cut"] = True
            if rule.action == "truncate" and rule.fix_length:
                await send({"type": "http.response.body", "body": body[:left], "more_body": False})
                return
            if left:
                await send({"type": "http.response.body", "body": body[:left], "more_body": True})
            await _drop(send, receive)

        await self.app(scope, receive, faulty_send)

    async def _admin(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        req = Request(scope, receive, send)
        try:
            answer = await self._admin_answer(req)
        except HTTPError as exc:
            answer = error_response(exc)
        except ClientDisconnected:
            return
        await answer.send(send)

    async def _admin_answer(self, req: Request) -> Response:
        if req.method == "GET":
            return json_response({"faults": [r.describe() for r in self.rules]})
        if req.method == "DELETE":
            self.rules = []
            return empty(204)
        if req.method in ("POST", "PUT"):
            spec = await req.body(MAX_SPEC)
            try:
                self.rules = parse_spec(spec)
            except ValueError as exc:
                raise unprocessable(str(exc), ["body"]) from None
            return json_response({"faults": [r.describe() for r in self.rules]})
        raise HTTPError(405, 400, f"method {req.method} not allowed here", {"allow": "DELETE, GET, POST"})


def wrap(app: Any, spec: Optional[str], endpoint_of: Callable[[dict], Optional[str]]) -> Any:
    """``app`` wrapped in a :class:`FaultMiddleware` when ``spec`` is not None, else ``app`` itself;
    ``endpoint_of`` names the endpoint a request is routed to (``RoutedApp.endpoint_of``)."""
    if spec is None:
        return app
    rules = parse_spec(spec)
    log.warning("fault injection is enabled (%d rules); admin route %s", len(rules), ADMIN_PATH)
    return FaultMiddleware(app, rules, endpoint_of)
