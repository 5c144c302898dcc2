"""One way to declare a setting: on the dataclass field that holds it.

Trigger metadata, the service config, node pools and replica profiles are frozen dataclasses
whose fields are declared with :func:`setting`: the key a user writes, the default, how a raw
value is checked, and one line of documentation. :func:`build` reads a mapping of raw values
into such a class and reports *every* problem at once, as :class:`Problem` values that each
caller words in its own context (a gRPC status, a config path, a profile file). Rules that
involve several fields live in the class's ``validate()``, which runs once every field is
fine on its own.

A value is read by the field's type: ``int``, ``float``, ``bool``, ``str``, ``str | None``
(empty means unset) and ``Literal[...]`` (one of the options); any other type needs a
``parse`` function. Trigger metadata arrives as text (``text=True``: ``"5"`` is read as 5),
YAML documents arrive typed (``5`` is an int, ``"5"`` is a string and not a number).

No I/O and no YAML here, so the pure model can declare its settings with it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal, TypeVar, Union

Check = Callable[[Any], "str | None"]  # why a typed value is out of range, or None
Parse = Callable[[Any], Any]  # raw value -> typed value; ValueError when not accepted

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """How one field is read, checked and documented."""

    key: str  # as users write it; the field name when not given
    doc: str
    check: Check | None = None
    parse: Parse | None = None
    accepted: str = ""  # the accepted form for messages and docs; derived when empty
    shown_default: str | None = None  # the default as users would write it, for docs


def setting(default: Any = MISSING, *, doc: str, key: str = "", check: Check | None = None,
            parse: Parse | None = None, accepted: str = "",
            default_factory: Callable[[], Any] | Any = MISSING,
            shown_default: str | None = None) -> Any:
    """A dataclass field declared as a setting (no default: the key is required)."""
    meta = {"setting": Setting(key, doc, check, parse, accepted, shown_default)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Declared:
    """A declared field of a settings class, its type resolved."""

    name: str
    key: str
    hint: Any
    setting: Setting
    default: Any  # MISSING when required

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def accepted(self) -> str:
        return self.setting.accepted or describe_type(self.hint)

    @property
    def shown_default(self) -> str:
        if self.setting.shown_default is not None:
            return self.setting.shown_default
        return "required" if self.required else show(self.default)


_DECLARED: dict[type[Any], tuple[Declared, ...]] = {}


def declared(cls: type[Any]) -> tuple[Declared, ...]:
    """The fields of ``cls`` declared with :func:`setting`, in order."""
    if cls not in _DECLARED:
        _DECLARED[cls] = _declare(cls)
    return _DECLARED[cls]


def _declare(cls: type[Any]) -> tuple[Declared, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        s = f.metadata.get("setting")
        if s is None:
            continue
        default = f.default
        if default is MISSING and f.default_factory is not MISSING:
            default = f.default_factory()
        out.append(Declared(f.name, s.key or f.name, hints[f.name], s, default))
    return tuple(out)


ProblemKind = Literal["unknown", "required", "type", "range", "rule"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a raw mapping: which key, what was given, and why."""

    kind: ProblemKind
    key: str
    raw: Any = None
    detail: str = ""  # the accepted form (type, required), the reason (range), the whole
    # message (rule), or the known keys (unknown)
    field: Declared | None = None


class OutOfRange(ValueError):
    """A value of the right type that a check refuses; ``reason`` says what is allowed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read(field: Declared, raw: Any, *, text: bool) -> Any:
    """The typed value of ``raw`` for ``field``; ValueError (OutOfRange: range) if refused."""
    if text and isinstance(raw, str):
        raw = raw.strip()
    parse = field.setting.parse
    value = parse(raw) if parse is not None else read_typed(field.hint, raw, text=text)
    check = field.setting.check
    reason = check(value) if check is not None and value is not None else None
    if reason:
        raise OutOfRange(reason)
    return value


def read_typed(hint: Any, raw: Any, *, text: bool) -> Any:
    """``raw`` read as ``hint``; ValueError when it is not one."""
    if text and isinstance(raw, str):
        raw = raw.strip()
    if typing.get_origin(hint) is Literal:
        if raw not in typing.get_args(hint):
            raise ValueError(raw)
        return raw
    if _is_optional_text(hint):
        if raw is None or (isinstance(raw, str) and not raw):
            return None
        return read_typed(str, raw, text=text)
    reader = _READERS.get(hint)
    if reader is None:
        raise TypeError(f"no reader for {hint!r}: declare the setting with parse=")
    return reader(raw, text)


def _read_int(raw: Any, text: bool) -> int:
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int):
        return raw
    if text and isinstance(raw, str):
        return int(raw)
    raise ValueError(raw)


def _read_float(raw: Any, text: bool) -> float:
    readable = isinstance(raw, int | float) or (text and isinstance(raw, str))
    if isinstance(raw, bool) or not readable:
        raise ValueError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _read_bool(raw: Any, text: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if text and isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError(raw)


def _read_str(raw: Any, text: bool) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError(raw)


_READERS: dict[Any, Callable[[Any, bool], Any]] = {
    int: _read_int, float: _read_float, bool: _read_bool, str: _read_str,
}


def _is_optional_text(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin in (Union, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}


def build(cls: type[T], values: Mapping[str, Any], *, text: bool = False,
          known: Iterable[str] = (), given: Mapping[str, Any] | None = None,
          ) -> tuple[T | None, list[Problem]]:
    """``cls`` from raw ``values`` by key, and every problem found (then the instance is None).

    Keys that are neither declared nor in ``known`` are problems of kind ``unknown``.
    ``given``: constructor arguments that are not read from ``values`` (a pool's name).
    ``validate()`` (a list of messages) runs only when every field read well.
    """
    fields = declared(cls)
    allowed = {f.key for f in fields} | set(known)
    listed = ", ".join([*(f.key for f in fields), *known])
    problems = [Problem("unknown", str(k), values[k], listed) for k in values if k not in allowed]
    kwargs, field_problems = read_fields(fields, values, text=text)
    problems += field_problems
    if problems:
        return None, problems
    instance = cls(**kwargs, **(given or {}))
    problems += [Problem("rule", "", None, message) for message in validate(instance)]
    return (None if problems else instance), problems


def read_fields(fields: Iterable[Declared], values: Mapping[str, Any], *,
                text: bool) -> tuple[dict[str, Any], list[Problem]]:
    """The typed values of ``fields`` found in ``values`` (by key), and their problems."""
    kwargs: dict[str, Any] = {}
    problems: list[Problem] = []
    for f in fields:
        if f.key not in values:
            if f.required:
                problems.append(Problem("required", f.key, None, f.accepted, f))
            continue
        raw = values[f.key]
        try:
            kwargs[f.name] = read(f, raw, text=text)
        except OutOfRange as exc:
            problems.append(Problem("range", f.key, raw, exc.reason, f))
        except ValueError:
            problems.append(Problem("type", f.key, raw, f.accepted, f))
    return kwargs, problems


def validate(instance: Any) -> list[str]:
    """The cross-field problems ``instance.validate()`` names (none when it has no rules)."""
    rules = getattr(instance, "validate", None)
    return list(rules()) if rules is not None else []


# --- checks: each returns why a value is refused, or None --------------------------------


def at_least(low: float) -> Check:
    return lambda value: None if math.isfinite(value) and value >= low else \
        f"must be >= {show(low)}"


def above(low: float) -> Check:
    return lambda value: None if math.isfinite(value) and value > low else \
        f"must be > {show(low)}"


def within(low: float, high: float, *, low_open: bool = False) -> Check:
    """``low <= value <= high`` (``low < value`` with ``low_open``)."""
    sign = ">" if low_open else ">="

    def check(value: float) -> str | None:
        ok = (value > low if low_open else value >= low) and value <= high
        return None if ok else f"must be {sign} {show(low)} and <= {show(high)}"

    return check


def port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port, 0-65535 (0 = pick a free one)"


# --- documentation ------------------------------------------------------------------------


def describe_type(hint: Any) -> str:
    """The accepted form of a type, for messages: 'an integer', 'one of: a, b'."""
    if typing.get_origin(hint) is Literal:
        return "one of: " + ", ".join(str(o) for o in typing.get_args(hint))
    if _is_optional_text(hint):
        return "a string (empty: not set)"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        hint, str(hint))


def show(value: Any) -> str:
    """A default as a user would write it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None:
        return ""
    if isinstance(value, tuple | list | dict):
        return "" if not value else repr(value)
    return str(value)
