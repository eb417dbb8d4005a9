"""The lax JSON conversion behind every wire model, and ``Model``, their common base.

Parsing is lax the way upstream clients are (pydantic's lax mode):

- an ``int`` field accepts ``5``, ``5.0`` and ``"5"``; it rejects ``5.5`` and booleans;
- a ``float`` field accepts ints, floats and numeric strings; a ``str`` field rejects numbers;
- unknown fields are ignored; missing optional fields take their defaults.

A body that is not JSON, lacks a required field or holds a rejected value raises
:class:`~mictlanx_sync.protocol.errors.ResponseFormatError`. The models themselves live in
:mod:`.wire`; this module knows nothing of any one of them. Pure: no ``requests``.

>>> parse_as(int, "5"), parse_as(float, 2)
(5, 2.0)
"""

from __future__ import annotations

import json
import typing
from typing import Any, Dict, List, Optional, Union

import attrs

from ..errors import ResponseFormatError

__all__ = ["Model", "parse_as", "loads", "alias", "list_field", "dict_field"]

_ALIASES = "mictlanx_aliases"


def alias(*names: str) -> dict[str, tuple[str, ...]]:
    """``attrs.field`` metadata: other JSON names the field is also read from."""
    return {_ALIASES: names}


# --- lax conversion ------------------------------------------------------------------
class _Reject(Exception):
    """A value rejected during conversion; ``path`` locates it."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(f"{path or '<root>'}: {msg}")


def _to_int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise _Reject(path, "expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise _Reject(path, f"expected an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 10)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise _Reject(path, f"expected an integer, got {value!r}") from None
            if as_float.is_integer():
                return int(as_float)
            raise _Reject(path, f"expected an integer, got {value!r}") from None
    raise _Reject(path, f"expected an integer, got {type(value).__name__}")


def _to_float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _Reject(path, "expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Reject(path, f"expected a number, got {value!r}") from None
    raise _Reject(path, f"expected a number, got {type(value).__name__}")


def _to_str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    raise _Reject(path, f"expected a string, got {type(value).__name__}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _to_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Reject(path, f"expected a boolean, got {value!r}")


#: a value already of exactly this type is its own conversion (``bool`` is not an ``int`` here)
_EXACT: dict[Any, type] = {str: str, int: int, bool: bool}
#: ``(get_origin(tp), get_args(tp))`` per type: a model's fields repeat on every answer
_SHAPES: dict[Any, tuple[Any, tuple[Any, ...]]] = {}


def _shape(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    shape = _SHAPES.get(tp)
    if shape is None:
        shape = _SHAPES[tp] = (typing.get_origin(tp), typing.get_args(tp))
    return shape


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any or tp is object or _EXACT.get(tp) is type(value):
        return value
    origin, args = _shape(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        last: Optional[_Reject] = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except _Reject as exc:
                last = exc
        raise last or _Reject(path, "no matching type")
    if origin in (list, List):
        if not isinstance(value, list):
            raise _Reject(path, f"expected a list, got {type(value).__name__}")
        (item_tp,) = args or (Any,)
        return [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _Reject(path, f"expected an object, got {type(value).__name__}")
        key_tp, val_tp = args or (Any, Any)
        return {_convert(key_tp, k, path): _convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        return _to_bool(value, path)
    if tp is int:
        return _to_int(value, path)
    if tp is float:
        return _to_float(value, path)
    if tp is str:
        return _to_str(value, path)
    if isinstance(tp, type) and attrs.has(tp):
        return _build(tp, value, path)
    raise _Reject(path, f"unsupported type {tp!r}")  # pragma: no cover - a programming error


_FIELDS_CACHE: dict[type, list[tuple[str, Any, tuple[str, ...], bool]]] = {}


def _fields(cls: type) -> list[tuple[str, Any, tuple[str, ...], bool]]:
    cached = _FIELDS_CACHE.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = [
            (f.name, hints[f.name], f.metadata.get(_ALIASES, ()), f.default is attrs.NOTHING)
            for f in attrs.fields(cls)
        ]
        _FIELDS_CACHE[cls] = cached
    return cached


def _build(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _Reject(path, f"expected an object for {cls.__name__}, got {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for name, tp, aliases, required in _fields(cls):
        for candidate in (name, *aliases):
            if candidate in value:
                kwargs[name] = _convert(tp, value[candidate], f"{path}.{candidate}" if path else candidate)
                break
        else:
            if required:
                raise _Reject(path, f"missing field {name!r} of {cls.__name__}")
    return cls(**kwargs)


def loads(body: Union[bytes, bytearray, str]) -> Any:
    """JSON-decode a response body, raising ``ResponseFormatError`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, TypeError) as exc:
        text = body[:200] if isinstance(body, str) else bytes(body[:200]).decode("utf-8", "replace")
        raise ResponseFormatError(f"response is not JSON: {text!r}") from exc


def parse_as(tp: Any, obj: Any) -> Any:
    """Convert parsed JSON ``obj`` to ``tp`` (a model, ``List[Model]``, ``Dict[str, Model]``, ``int``...).

    ``obj`` may also be raw bytes or text, which are JSON-decoded first.
    Raises ``ResponseFormatError``.
    """
    if isinstance(obj, (bytes, bytearray)):
        obj = loads(obj)
    try:
        return _convert(tp, obj, "")
    except _Reject as exc:
        name = getattr(tp, "__name__", None) or str(tp)
        raise ResponseFormatError(f"invalid {name}: {exc}") from None


def _as_dict(value: Any) -> Any:
    if attrs.has(type(value)):
        return {f.name: _as_dict(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, dict):
        return {k: _as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_dict(v) for v in value]
    return value


class Model:
    """Mixin of every wire model: ``from_json`` (lax) and ``to_dict`` (JSON-ready)."""

    __slots__ = ()

    @classmethod
    def from_json(cls, obj: Any) -> Any:
        """Parse a JSON object (or raw JSON bytes/text); raises ``ResponseFormatError``."""
        return parse_as(cls, obj)

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)  # type: ignore[no-any-return]


def list_field() -> Any:
    """An ``attrs`` field defaulting to a fresh empty list."""
    return attrs.field(factory=list)


def dict_field() -> Any:
    """An ``attrs`` field defaulting to a fresh empty dict."""
    return attrs.field(factory=dict)
