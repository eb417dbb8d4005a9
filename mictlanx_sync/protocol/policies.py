"""Retry and breaker policies: frozen value objects, and the pure rules built on them.

Client-api §8.1. Nothing here sleeps, logs or does I/O; :mod:`.retrying` and
:mod:`.breaker` apply these rules.

>>> policy = RetryPolicy(retries=3, initial_delay=1.0, jitter=False)
>>> [wait_seconds(policy, n) for n in (1, 2, 3)]
[1.0, 2.0, 4.0]
>>> RetryPolicy.from_options(policy, max_tries=5, max_backoff=3.0).max_delay
3.0
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional

import attrs

from .errors import RETRY_AFTER_STATUSES, RETRYABLE_STATUSES, MictlanXError, ValidationError

__all__ = [
    "RetryPolicy", "BreakerPolicy", "is_retryable", "wait_seconds", "retry_after_seconds",
    "RETRYABLE_STATUSES", "RETRY_AFTER_STATUSES",
]

def _number(name: str, value: Any) -> float:
    # bool is an int subclass, but `retries=True` is a mistake, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValidationError(f"{name} must be finite, got {value!r}")
    return float(value)


def _attempts(name: str, value: Any) -> int:
    number = _number(name, value)
    if number != int(number):
        raise ValidationError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _at_least(low: float, *, strict: bool = False) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if value < low or (strict and value == low):
            relation = ">" if strict else ">="
            raise ValidationError(f"{attribute.name} must be {relation} {low}, got {value!r}")

    return check


def _boolean(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a bool, got {type(value).__name__}")


@attrs.frozen
class RetryPolicy:
    """How one operation (a request, or one chunk's transfer) is retried.

    - ``retries``: **total attempts** (≥ 1); no sleep follows the last.
    - wait before attempt n+1: ``min(max_delay, initial_delay * backoff_factor**(n-1))``;
      with ``jitter``, uniform in ``[0, that]`` (from the un-jittered value: no compounding).
    - ``deadline``: seconds bounding the whole operation, waits included; no attempt
      starts after it.

    Every number is finite, so a retried call always ends. A wrong type raises
    ``TypeError``, a bad value ``ValidationError``. Use :meth:`from_options` to apply the
    upstream spellings (``max_tries``, ``max_backoff``, ``delay``...).

    >>> RetryPolicy().retries, RetryPolicy().deadline
    (5, 300.0)
    """

    retries: int = attrs.field(default=5, converter=lambda v: _attempts("retries", v), validator=_at_least(1))
    initial_delay: float = attrs.field(default=0.5, converter=lambda v: _number("initial_delay", v),
                                       validator=_at_least(0.0))
    backoff_factor: float = attrs.field(default=2.0, converter=lambda v: _number("backoff_factor", v),
                                        validator=_at_least(0.0, strict=True))
    max_delay: float = attrs.field(default=10.0, converter=lambda v: _number("max_delay", v),
                                   validator=_at_least(0.0))
    jitter: bool = attrs.field(default=True, validator=_boolean)
    deadline: float = attrs.field(default=300.0, converter=lambda v: _number("deadline", v),
                                  validator=_at_least(0.0, strict=True))

    @classmethod
    def from_options(
        cls,
        base: Optional[RetryPolicy] = None,
        *,
        retries: Optional[int] = None,
        max_retries: Optional[int] = None,
        max_tries: Optional[int] = None,
        tries: Optional[int] = None,
        initial_delay: Optional[float] = None,
        delay: Optional[float] = None,
        backoff_factor: Optional[float] = None,
        backoff: Optional[float] = None,
        max_delay: Optional[float] = None,
        max_backoff: Optional[float] = None,
        jitter: Optional[bool] = None,
        deadline: Optional[float] = None,
    ) -> RetryPolicy:
        """``base`` (default: ``RetryPolicy()``) with per-call overrides; ``None`` keeps the base value.

        Aliases (client-api §1.6-7): ``retries``/``max_retries``/``max_tries``/``tries`` all
        count total attempts; ``delay`` is ``initial_delay``; ``backoff`` is
        ``backoff_factor``; ``max_backoff`` is ``max_delay``. Two spellings of one option
        with different values raise ``ValidationError``.

        >>> RetryPolicy.from_options(max_retries=2, delay=0.1).retries
        2
        """
        policy = base if base is not None else cls()
        changes = {
            "retries": _merge_aliases(retries=retries, max_retries=max_retries, max_tries=max_tries, tries=tries),
            "initial_delay": _merge_aliases(initial_delay=initial_delay, delay=delay),
            "backoff_factor": _merge_aliases(backoff_factor=backoff_factor, backoff=backoff),
            "max_delay": _merge_aliases(max_delay=max_delay, max_backoff=max_backoff),
            "jitter": jitter,
            "deadline": deadline,
        }
        given = {name: value for name, value in changes.items() if value is not None}
        return attrs.evolve(policy, **given) if given else policy

    def with_overrides(self, **options: Any) -> RetryPolicy:
        """``RetryPolicy.from_options(self, **options)``."""
        return type(self).from_options(self, **options)


def _merge_aliases(**spellings: Any) -> Any:
    given = {name: value for name, value in spellings.items() if value is not None}
    values = list(given.values())
    if any(value != values[0] for value in values[1:]):
        names = " and ".join(f"{name}={value!r}" for name, value in given.items())
        raise ValidationError(f"conflicting values for one option: {names}")
    return next(iter(given.values()), None)


@attrs.frozen
class BreakerPolicy:
    """One circuit breaker per router: it opens after ``fail_max`` consecutive failures
    and lets one half-open probe through ``reset_timeout`` seconds later.

    >>> BreakerPolicy().fail_max, BreakerPolicy().reset_timeout
    (5, 30.0)
    """

    fail_max: int = attrs.field(default=5, converter=lambda v: _attempts("fail_max", v), validator=_at_least(1))
    reset_timeout: float = attrs.field(default=30.0, converter=lambda v: _number("reset_timeout", v),
                                       validator=_at_least(0.0, strict=True))


def is_retryable(error: object) -> bool:
    """Whether an attempt that failed with ``error`` may be repeated (client-api §8.1): what
    the error says of itself, :attr:`~.errors.MictlanXError.retryable` (retried: transport
    errors and HTTP 429, 500, 502, 503, 504; never a TLS verification failure, another 4xx,
    an integrity or format error). Anything that is not a ``MictlanXError`` is final."""
    return isinstance(error, MictlanXError) and error.retryable


def retry_after_seconds(error: object) -> Optional[float]:
    """The wait ``error`` asks for before the next attempt
    (:attr:`~.errors.MictlanXError.retry_after`: a 429/503's ``Retry-After``), else ``None``."""
    return error.retry_after if isinstance(error, MictlanXError) else None


def wait_seconds(
    policy: RetryPolicy, attempt_number: int, retry_after: Optional[float] = None, rng: Any = random,
) -> float:
    """Seconds to wait after failed attempt ``attempt_number`` (1-based), before the next.

    ``min(max_delay, initial_delay * backoff_factor**(n-1))``; with jitter, uniform in
    ``[0, that]``. A ``retry_after`` (from a 429/503) replaces it, capped at ``max_delay``
    and not jittered: the server asked for that wait.

    >>> wait_seconds(RetryPolicy(jitter=False), 10)
    10.0
    >>> wait_seconds(RetryPolicy(), 1, retry_after=60)
    10.0
    """
    if retry_after is not None:
        return min(policy.max_delay, max(0.0, float(retry_after)))
    exponent = max(0, attempt_number - 1)
    try:
        ceiling = min(policy.max_delay, policy.initial_delay * policy.backoff_factor**exponent)
    except OverflowError:  # a huge attempt number: the cap applies
        ceiling = policy.max_delay
    if policy.jitter:
        return float(rng.uniform(0.0, ceiling))
    return float(ceiling)
