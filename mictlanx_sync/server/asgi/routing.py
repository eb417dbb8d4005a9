"""The routing table: ``(method, path template)`` to a handler, one handler signature for all.

A handler is called ``handler(state, req, *path_params)`` and returns its answer (an
:data:`~.responses.Answer`), or None when it sent the answer itself through ``req.send`` (a
stream). Path parameters come in template order, decoded from the raw path (:mod:`.paths`);
those named in the table's ``params`` are validated first (400/400 when invalid), the others
are passed as they are, for the handler to validate where it must (a phase 2 drains the body
before it answers an invalid task id).

**Precedence** (protocol §2.9). Among the routes whose template matches the path, the one for
the request's method with the most literal segments, leftmost first, wins, so ``GET
/buckets/data/k`` reads key ``k`` of bucket ``data`` while ``POST`` to that path is phase 2 of
task ``k``. A *reserved* word is stronger: where some route matching the path so far has it as
a literal segment, no parameter takes that word, whatever the method. ``metadata`` is
reserved in both servers (segment 3 ``metadata`` always selects a metadata route, so ``DELETE
/buckets/b/metadata`` is 405, not a delete of the key ``metadata``).

No route matches: 404/404. Routes match for other methods only: 405/400 with ``Allow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Mapping, Optional, Sequence

from .errors import HTTPError, not_found
from .responses import Answer

Handler = Callable[..., Awaitable[Optional[Answer]]]


@dataclass(frozen=True)
class Route:
    """One endpoint: its protocol id (``P5``, ``R11``; empty for ``/openapi.json``), method,
    path template (``{name}`` segments are parameters), handler and one-line summary."""

    endpoint: str
    method: str
    path: str
    handler: Handler
    summary: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    @property
    def param_names(self) -> list[str]:
        return [s[1:-1] for s in self.segments if _is_param(s)]


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


class RouteTable:
    """Finds the route of a request; see the module docstring for the rules."""

    def __init__(self, routes: Iterable[Route], *, params: Mapping[str, Callable[[str], str]] = {},
                 reserved: Iterable[str] = (), head_as_get: bool = False) -> None:
        self.routes = tuple(routes)
        self._templates = [(route, route.segments) for route in self.routes]
        self._params = dict(params)
        self._reserved = frozenset(reserved)
        self._head_as_get = head_as_get
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for route, template in self._templates:
            shape = (route.method, tuple("{}" if _is_param(s) else s for s in template))
            if shape in seen:
                raise ValueError(f"two routes for {route.method} {route.path}")
            seen.add(shape)

    def matching(self, segments: Sequence[str]) -> list[Route]:
        """Every route whose template matches ``segments`` (any method)."""
        return [route for route, template in self._templates if self._matches(template, segments)]

    def find(self, method: str, segments: Sequence[str], shown: str) -> tuple[Route, list[str]]:
        """The route for ``method`` and the path ``segments`` (``shown`` names the path in
        errors), with its validated path parameters; 404 or 405 when there is none."""
        route = self.select(method, segments, shown)
        values = [value for part, value in zip(route.segments, segments, strict=True) if _is_param(part)]
        return route, [self._check(name, value) for name, value in zip(route.param_names, values, strict=True)]

    def select(self, method: str, segments: Sequence[str], shown: str) -> Route:
        """The route for ``method`` and ``segments``, parameters not checked; 404 or 405."""
        candidates = self.matching(segments)
        if not candidates:
            raise not_found(f"no route for {method} {shown}")
        wanted = "GET" if method == "HEAD" and self._head_as_get else method
        mine = [r for r in candidates if r.method == wanted]
        if not mine:
            allowed = ", ".join(sorted({r.method for r in candidates}))
            raise HTTPError(405, 400, f"method {method} not allowed on {shown}", headers={"Allow": allowed})
        return max(mine, key=lambda r: [0 if _is_param(part) else 1 for part in r.segments])

    def _matches(self, template: Sequence[str], segments: Sequence[str]) -> bool:
        if len(template) != len(segments):
            return False
        for index, (part, segment) in enumerate(zip(template, segments, strict=True)):
            if not _is_param(part):
                if part != segment:
                    return False
            elif segment in self._reserved and self._reserves(index, segments):
                return False
        return True

    def _reserves(self, index: int, segments: Sequence[str]) -> bool:
        """Whether a route that matches ``segments`` up to ``index`` has ``segments[index]`` there."""
        word, before = segments[index], segments[:index]
        for _, template in self._templates:
            if len(template) > index and template[index] == word and all(
                    _is_param(part) or part == segment for part, segment in zip(template[:index], before, strict=True)):
                return True
        return False

    def _check(self, name: str, value: str) -> str:
        validate = self._params.get(name)
        return validate(value) if validate is not None else value
