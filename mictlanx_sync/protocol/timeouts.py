"""Timeouts: the one type and the one normaliser of every ``timeout`` argument (client-api §1.3).

A timeout is a number (the read timeout) or a ``(connect, read)`` pair of seconds; ``None`` is
the caller's default. :func:`resolve_timeout` turns any of them into the pair every request
is sent with, for ``Peer``, ``Router`` and ``Client`` alike:

>>> resolve_timeout(None, (5.0, 120.0))
(5.0, 120.0)
>>> resolve_timeout(30, (5.0, 120.0))
(5.0, 30.0)
>>> resolve_timeout(2, (5.0, 120.0))
(2.0, 2.0)
>>> resolve_timeout((1, 60), (5.0, 120.0))
(1.0, 60.0)
"""

from __future__ import annotations

import math
from typing import Tuple, Union

from .errors import ValidationError

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "Timeout", "TimeoutArg", "resolve_timeout"]

#: Seconds to connect when nothing else says (client-api §1.3: "connect from the instance (5 s)").
DEFAULT_CONNECT_TIMEOUT = 5.0

#: A resolved timeout: ``(connect, read)`` seconds.
Timeout = Tuple[float, float]

#: What a ``timeout=`` argument may be: seconds to read, a ``(connect, read)`` pair, or ``None``.
TimeoutArg = Union[float, int, Tuple[float, float], None]


def resolve_timeout(timeout: TimeoutArg, default: Timeout) -> Timeout:
    """``(connect, read)`` for a ``timeout`` argument; ``None`` gives ``default``.

    A number is the read timeout; connecting may take the default's connect timeout, but
    never longer than the read timeout itself (a 2 s call does not wait 5 s to connect). A
    pair (tuple or list) is taken as it is. Numbers must be finite and > 0
    (``ValidationError``); anything else, ``bool`` included, is a ``TypeError``.
    """
    if timeout is None:
        return default
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        read = _seconds(timeout, timeout)
        return (min(float(default[0]), read), read)
    if isinstance(timeout, (tuple, list)) and len(timeout) == 2:
        connect, read = (_seconds(t, timeout) for t in timeout)
        return (connect, read)
    raise TypeError(f"timeout must be a number or a (connect, read) pair, not {timeout!r}")


def _seconds(value: object, whole: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number or a (connect, read) pair, not {whole!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValidationError(f"timeouts must be finite and > 0, got {whole!r}")
    return float(value)
