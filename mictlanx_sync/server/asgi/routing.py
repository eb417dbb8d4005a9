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
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, Union

from .errors import HTTPError, not_found
from .responses import Answer

Handler = Callable[..., Awaitable[Optional[Answer]]]
#: path shapes whose matches are remembered (there are a few dozen in practice)
MAX_SHAPES = 4096


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


class _Template:
    """A route's template taken apart once, so that matching a request compares strings only."""

    __slots__ = ("route", "length", "literals", "literal_at", "params", "specificity")

    def __init__(self, route: Route) -> None:
        segments = route.segments
        self.route = route
        self.length = len(segments)
        #: (position, word) of every literal segment, and the same by position
        self.literals = tuple((i, s) for i, s in enumerate(segments) if not _is_param(s))
        self.literal_at = dict(self.literals)
        #: (position, name) of every parameter
        self.params = tuple((i, s[1:-1]) for i, s in enumerate(segments) if _is_param(s))
        #: literal segments count, leftmost first (§2.9: literals win over parameters)
        self.specificity = tuple(0 if _is_param(s) else 1 for s in segments)

    def matches_before(self, index: int, segments: Sequence[str]) -> bool:
        return all(segments[i] == word for i, word in self.literals if i < index)


class RouteTable:
    """Finds the route of a request; see the module docstring for the rules."""

    def __init__(self, routes: Iterable[Route], *, params: Mapping[str, Callable[[str], str]] = {},
                 reserved: Iterable[str] = (), head_as_get: bool = False) -> None:
        self.routes = tuple(routes)
        self._templates = [_Template(route) for route in self.routes]
        self._by_length: dict[int, list[_Template]] = {}
        seen: set[tuple[str, tuple[tuple[int, str], ...], int]] = set()
        for template in self._templates:
            shape = (template.route.method, template.literals, template.length)
            if shape in seen:
                raise ValueError(f"two routes for {template.route.method} {template.route.path}")
            seen.add(shape)
            self._by_length.setdefault(template.length, []).append(template)
        self._params = dict(params)
        self._reserved = frozenset(reserved)
        self._head_as_get = head_as_get
        #: the words some template has at each position; any other segment matches only as a
        #: parameter, so the routes a path matches depend only on its *shape* (its segments that
        #: are such words, in place), and are computed once per shape
        words: dict[int, set[str]] = {}
        for template in self._templates:
            for index, word in template.literals:
                words.setdefault(index, set()).add(word)
        self._words = [frozenset(words.get(i, ())) for i in range(max(words, default=-1) + 1)]
        self._by_shape: dict[tuple[Any, ...], list[_Template]] = {}
        self._choices: dict[tuple[Any, ...], Union[_Template, str]] = {}

    def matching(self, segments: Sequence[str]) -> list[Route]:
        """Every route whose template matches ``segments`` (any method)."""
        return [template.route for template in self._matching(segments)]

    def find(self, method: str, segments: Sequence[str], shown: str) -> tuple[Route, list[str]]:
        """The route for ``method`` and the path ``segments`` (``shown`` names the path in
        errors), with its validated path parameters; 404 or 405 when there is none."""
        template = self._select(method, segments, shown)
        checks = self._params
        return template.route, [checks[name](segments[i]) if name in checks else segments[i]
                                for i, name in template.params]

    def select(self, method: str, segments: Sequence[str], shown: str) -> Route:
        """The route for ``method`` and ``segments``, parameters not checked; 404 or 405."""
        return self._select(method, segments, shown).route

    def _select(self, method: str, segments: Sequence[str], shown: str) -> _Template:
        key = (method, *self._shape(segments))
        choice = self._choices.get(key)
        if choice is None:
            choice = self._choose(method, self._matching(segments))
            if len(self._choices) < MAX_SHAPES:
                self._choices[key] = choice
        if isinstance(choice, _Template):
            return choice
        if not choice:
            raise not_found(f"no route for {method} {shown}")
        raise HTTPError(405, 400, f"method {method} not allowed on {shown}", headers={"Allow": choice})

    def _choose(self, method: str, candidates: list[_Template]) -> Union[_Template, str]:
        """The template for ``method`` among ``candidates``, else the methods they allow ("": none)."""
        wanted = "GET" if method == "HEAD" and self._head_as_get else method
        mine = [t for t in candidates if t.route.method == wanted]
        if mine:
            return max(mine, key=lambda t: t.specificity)
        return ", ".join(sorted({t.route.method for t in candidates}))

    def _shape(self, segments: Sequence[str]) -> tuple[Any, ...]:
        """The segments that are words of some template at their position (None for the others);
        positions past every template's end hold no word (their paths match nothing)."""
        return len(segments), *[s if s in words else None for s, words in zip(segments, self._words, strict=False)]

    def _matching(self, segments: Sequence[str]) -> list[_Template]:
        shape = self._shape(segments)
        found = self._by_shape.get(shape)
        if found is None:
            found = self._match(segments)
            if len(self._by_shape) < MAX_SHAPES:
                self._by_shape[shape] = found
        return found

    def _match(self, segments: Sequence[str]) -> list[_Template]:
        reserved = self._reserved
        return [t for t in self._by_length.get(len(segments), ())
                if all(segments[i] == word for i, word in t.literals)
                and not any(segments[i] in reserved and self._reserves(i, segments) for i, _ in t.params)]

    def _reserves(self, index: int, segments: Sequence[str]) -> bool:
        """Whether a route that matches ``segments`` up to ``index`` has ``segments[index]`` there."""
        word = segments[index]
        return any(t.literal_at.get(index) == word and t.matches_before(index, segments) for t in self._templates)
