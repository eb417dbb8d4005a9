"""``Result``, ``Ok`` and ``Err``: the return type of every I/O method (client-api §2).

Every public I/O method returns ``Ok(value)`` or ``Err(error)`` instead of raising, to
mirror upstream MictlanX. ``unwrap()`` raises the contained error itself, so
``client.get(...).unwrap()`` reads like any exception-raising library::

    >>> r = Ok(3).map(lambda v: v + 1)
    >>> r.unwrap()
    4
    >>> match r:
    ...     case Ok(v): print(v)
    ...     case Err(e): print("failed", e)
    4
"""

from __future__ import annotations

from typing import Any, Callable, Generic, NoReturn, Optional, TypeVar, Union

T = TypeVar("T")
E = TypeVar("E")
U = TypeVar("U")
F = TypeVar("F")

__all__ = ["Result", "Ok", "Err"]


class Result(Generic[T, E]):
    """Base class of :class:`Ok` and :class:`Err`; never instantiated directly."""

    __slots__ = ()

    @property
    def is_ok(self) -> bool:
        return isinstance(self, Ok)

    @property
    def is_err(self) -> bool:
        return isinstance(self, Err)

    def __bool__(self) -> bool:
        return self.is_ok

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    # The interface, for code that holds a plain ``Result``; Ok and Err implement it.
    def unwrap(self) -> T:
        raise NotImplementedError

    def unwrap_err(self) -> E:
        raise NotImplementedError

    def unwrap_or(self, default: U) -> Union[T, U]:
        raise NotImplementedError

    def unwrap_or_else(self, fn: Callable[[E], U]) -> Union[T, U]:
        raise NotImplementedError

    def expect(self, msg: str) -> T:
        raise NotImplementedError

    def expect_err(self, msg: str) -> E:
        raise NotImplementedError

    def map(self, fn: Callable[[T], U]) -> Result[U, E]:
        raise NotImplementedError

    def map_err(self, fn: Callable[[E], F]) -> Result[T, F]:
        raise NotImplementedError

    def flatmap(self, fn: Callable[[T], Result[U, E]]) -> Result[U, E]:
        raise NotImplementedError

    def and_then(self, fn: Callable[[T], Result[U, E]]) -> Result[U, E]:
        return self.flatmap(fn)

    def ok(self) -> Optional[T]:
        raise NotImplementedError

    def err(self) -> Optional[E]:
        raise NotImplementedError

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")


class Ok(Result[T, E]):
    """A successful result holding ``value``."""

    __slots__ = ("value",)
    __match_args__ = ("value",)
    value: T

    def __init__(self, value: T) -> None:
        object.__setattr__(self, "value", value)

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ok) and self.value == other.value

    def __hash__(self) -> int:
        return hash(("Ok", self.value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ok, (self.value,))

    def unwrap(self) -> T:
        return self.value

    def unwrap_err(self) -> NoReturn:
        raise ValueError(f"unwrap_err() called on Ok({self.value!r})")

    def unwrap_or(self, default: U) -> T:
        return self.value

    def unwrap_or_else(self, fn: Callable[[E], U]) -> T:
        return self.value

    def expect(self, msg: str) -> T:
        return self.value

    def expect_err(self, msg: str) -> NoReturn:
        raise ValueError(f"{msg}: {self.value!r}")

    def map(self, fn: Callable[[T], U]) -> Ok[U, E]:
        return Ok(fn(self.value))

    def map_err(self, fn: Callable[[E], F]) -> Ok[T, F]:
        return Ok(self.value)

    def flatmap(self, fn: Callable[[T], Result[U, E]]) -> Result[U, E]:
        return fn(self.value)

    and_then = flatmap

    def ok(self) -> T:
        return self.value

    def err(self) -> None:
        return None


class Err(Result[T, E]):
    """A failed result holding ``error`` (normally a ``MictlanXError``)."""

    __slots__ = ("error",)
    __match_args__ = ("error",)
    error: E

    def __init__(self, error: E) -> None:
        object.__setattr__(self, "error", error)

    def __repr__(self) -> str:
        return f"Err({self.error!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Err) and self.error == other.error

    def __hash__(self) -> int:
        return hash(("Err", id(self.error) if isinstance(self.error, BaseException) else self.error))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Err, (self.error,))

    def _raise(self, prefix: str | None = None) -> NoReturn:
        error: Any = self.error
        if isinstance(error, BaseException):
            if prefix is not None:
                with_prefix = getattr(error, "with_prefix", None)
                if with_prefix is not None:
                    raise with_prefix(prefix)
                add_note = getattr(error, "add_note", None)  # Python >= 3.11
                if add_note is not None:
                    add_note(prefix)
            raise error
        raise ValueError(f"{prefix}: {error!r}" if prefix else error)

    def unwrap(self) -> NoReturn:
        self._raise()

    def unwrap_err(self) -> E:
        return self.error

    def unwrap_or(self, default: U) -> U:
        return default

    def unwrap_or_else(self, fn: Callable[[E], U]) -> U:
        return fn(self.error)

    def expect(self, msg: str) -> NoReturn:
        self._raise(msg)

    def expect_err(self, msg: str) -> E:
        return self.error

    def map(self, fn: Callable[[T], U]) -> Err[U, E]:
        return Err(self.error)

    def map_err(self, fn: Callable[[E], F]) -> Err[T, F]:
        return Err(fn(self.error))

    def flatmap(self, fn: Callable[[T], Result[U, E]]) -> Err[U, E]:
        return Err(self.error)

    and_then = flatmap

    def ok(self) -> None:
        return None

    def err(self) -> E:
        return self.error


ResultType = Union[Ok[T, E], Err[T, E]]
