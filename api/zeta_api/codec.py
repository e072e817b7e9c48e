"""The wire codec: JSON-like values to records, with field-path errors.

:func:`load` builds a record from what the apiserver (or a ConfigMap) hands over and
raises the caller's error class with the path of the first problem, in the form the
apiserver uses (``spec.models[1].capacity: must be >= 1, got 0``), following the
declarations of :mod:`zeta_api.schema`. :mod:`zeta_api.dumping` writes records back;
:mod:`zeta_api.checking` tells, without that round trip, whether :func:`load` would
take back what it writes.
"""

import enum
import math
import re
import typing
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import TypeVar

from zeta_api.durations import format_duration, parse_duration
from zeta_api.errors import DurationError, ZetaApiError
from zeta_api.schema import (
    Meta,
    Rule,
    TypeInfo,
    enum_cls,
    format_number,
    item_of,
    matches,
    plan,
    record_cls,
)

__all__ = ["Loader", "load"]

T = TypeVar("T")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def is_rfc3339(text: str) -> bool:
    """Whether ``text`` is an RFC 3339 date-time (what Kubernetes stores in timestamps)."""
    if not _DATE_TIME.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),  # before int: bool is an int in Python, not in JSON
    ((int, float), "number"),
    (str, "string"),
    ((list, tuple), "array"),
    (Mapping, "object"),
    (type(None), "null"),
)


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    return next((name for cls, name in _KINDS if isinstance(value, cls)), type(value).__name__)


class Loader:
    """Carries the error class down the recursion; one instance per :func:`load` call."""

    def __init__(self, error: type[ZetaApiError]) -> None:
        self.error = error

    def fail(self, path: str, message: str) -> ZetaApiError:
        path = path.lstrip(".")
        return self.error(f"{path}: {message}" if path else message)

    def record(self, cls: type[T], value: object, path: str, ignore: frozenset[str]) -> T:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {_kind(value)}")
        fields = plan(cls)
        known = {f.meta.wire for f in fields} | ignore
        for key in value:
            if key not in known:
                raise self.fail(join(path, str(key)), "unknown field")
        kwargs: dict[str, object] = {}
        for f in fields:
            where = join(path, f.meta.wire)
            raw = value.get(f.meta.wire)
            if raw is None:
                if f.required and not f.type.optional:
                    raise self.fail(where, "required")
                continue  # the dataclass default (or None) applies
            kwargs[f.attr] = self.value(f.type, f.meta, raw, where)
        try:
            result = cls(**kwargs)
        except ValueError as exc:  # a __post_init__ refusing a combination
            raise self.fail(path, str(exc)) from exc
        self.rules(getattr(cls, "cel_rules", ()), result, path)
        return result

    def rules(self, rules: tuple[Rule, ...], value: object, path: str) -> None:
        for rule in rules:
            violation = rule.check(value)
            if violation is not None:
                where, message = violation
                raise self.fail(path + where, message)

    def value(self, t: TypeInfo, meta: Meta, raw: object, path: str) -> object:
        if t.tag == "list":
            result: object = self.array(t, meta, raw, path)
        elif t.tag == "map":
            result = self.map(t, meta, raw, path)
        else:
            result = self.element(t, meta, raw, path)
        self.rules(meta.rules, result, path)
        return result

    def array(self, t: TypeInfo, meta: Meta, raw: object, path: str) -> tuple[object, ...]:
        if not isinstance(raw, list | tuple):
            raise self.fail(path, f"must be an array, got {_kind(raw)}")
        self.count(meta, len(raw), path)
        items = tuple(self.element(item_of(t), meta, x, f"{path}[{i}]") for i, x in enumerate(raw))
        self.unique(meta, items, path)
        return items

    def unique(self, meta: Meta, items: tuple[object, ...], path: str) -> None:
        """Refuse repeats in a set list, or repeated keys in a map list, as the apiserver does."""
        if not (meta.list_set or meta.list_map_keys):
            return
        keys = meta.list_map_keys
        seen: dict[object, int] = {}
        for i, item in enumerate(items):
            key = (
                item if meta.list_set else tuple(getattr(item, _attr(type(item), k)) for k in keys)
            )
            if key in seen:
                where = f"{path}[{i}]" + (f".{keys[0]}" if len(keys) == 1 else "")
                shown = (
                    repr(item)
                    if meta.list_set
                    else ", ".join(map(repr, typing.cast(tuple[object], key)))
                )
                raise self.fail(where, f"duplicate value {shown} (also in {path}[{seen[key]}])")
            seen[key] = i

    def map(self, t: TypeInfo, meta: Meta, raw: object, path: str) -> Mapping[str, object]:
        if not isinstance(raw, Mapping):
            raise self.fail(path, f"must be an object, got {_kind(raw)}")
        self.count(meta, len(raw), path)
        result: dict[str, object] = {}
        for key, item in raw.items():
            where = f"{path}[{key}]"
            if not isinstance(key, str) or not key:
                raise self.fail(where, "keys must be non-empty strings")
            result[key] = self.element(item_of(t), meta, item, where)
        return result

    def count(self, meta: Meta, n: int, path: str) -> None:
        if meta.min_items is not None and n < meta.min_items:
            raise self.fail(path, f"must have at least {meta.min_items} item(s), got {n}")
        if meta.max_items is not None and n > meta.max_items:
            raise self.fail(path, f"must have at most {meta.max_items} item(s), got {n}")

    def element(self, t: TypeInfo, meta: Meta, raw: object, path: str) -> object:
        if raw is None and t.optional:
            return None
        match t.tag:
            case "record":
                return self.record(record_cls(t), raw, path, frozenset())
            case "enum":
                choices = enum_cls(t)
                if not isinstance(raw, str) or raw not in _values(choices):
                    raise self.fail(path, f"must be one of {_choices(choices)}, got {raw!r}")
                return choices(raw)
            case "bool":
                if not isinstance(raw, bool):
                    raise self.fail(path, f"must be a boolean, got {_kind(raw)}")
                return raw
            case "int" | "float" if not meta.duration:
                return self.number(t, meta, raw, path)
        return self.string(meta, raw, path)

    def number(self, t: TypeInfo, meta: Meta, raw: object, path: str) -> float:
        if t.tag == "int" and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise self.fail(path, f"must be an integer, got {_kind(raw)} {raw!r}")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise self.fail(path, f"must be a number, got {_kind(raw)}")
        if not math.isfinite(raw):
            raise self.fail(path, f"must be a finite number, got {raw!r}")
        if meta.minimum is not None:
            if meta.exclusive_minimum and raw <= meta.minimum:
                raise self.fail(path, f"must be > {format_number(meta.minimum)}, got {raw!r}")
            if raw < meta.minimum:
                raise self.fail(path, f"must be >= {format_number(meta.minimum)}, got {raw!r}")
        if meta.maximum is not None and raw > meta.maximum:
            raise self.fail(path, f"must be <= {format_number(meta.maximum)}, got {raw!r}")
        return raw if t.tag == "int" else float(raw)

    def string(self, meta: Meta, raw: object, path: str) -> object:
        if not isinstance(raw, str):
            what = "a duration string such as '2s'" if meta.duration else "a string"
            raise self.fail(path, f"must be {what}, got {_kind(raw)}")
        if meta.duration:
            try:
                seconds = parse_duration(raw)
            except DurationError as exc:
                raise self.fail(path, str(exc)) from exc
            if meta.min_seconds is not None and seconds < meta.min_seconds:
                raise self.fail(
                    path, f"must be at least {format_duration(meta.min_seconds)}, got {raw!r}"
                )
            return seconds
        if meta.min_length is not None and len(raw) < meta.min_length:
            raise self.fail(path, f"must be at least {meta.min_length} character(s) long")
        if meta.max_length is not None and len(raw) > meta.max_length:
            raise self.fail(
                path, f"must be at most {meta.max_length} characters long, got {len(raw)}"
            )
        if meta.pattern is not None and not matches(meta.pattern, raw):
            raise self.fail(path, f"must match {meta.pattern}, got {raw!r}")
        if meta.date_time and not is_rfc3339(raw):
            raise self.fail(path, f"must be an RFC 3339 date-time, got {raw!r}")
        return raw


def _attr(cls: type, wire: str) -> str:
    return next(f.attr for f in plan(cls) if f.meta.wire == wire)


@cache
def _values(enum_cls: type[enum.StrEnum]) -> frozenset[str]:
    # `"x" in SomeEnum` raises TypeError on Python 3.11 for non-members; compare values.
    return frozenset(m.value for m in enum_cls)


def _choices(enum_cls: type[enum.StrEnum]) -> str:
    return ", ".join(repr(m.value) for m in enum_cls)


def load(
    cls: type[T],
    value: object,
    *,
    path: str,
    error: type[ZetaApiError],
    ignore: frozenset[str] = frozenset(),
) -> T:
    """Build a ``cls`` record from a JSON-like mapping, or raise ``error`` naming the field.

    Unknown keys are refused (a typo must not silently fall back to a default),
    except those in ``ignore`` at the top level. ``null`` means "not set".
    """
    return Loader(error).record(cls, value, path, ignore)
