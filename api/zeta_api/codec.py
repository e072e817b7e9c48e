"""The wire codec: records to and from JSON-like values, with field-path errors.

:func:`load` builds a record from what the apiserver (or a ConfigMap) hands over and
raises the caller's error class with the path of the first problem, in the form the
apiserver uses (``spec.models[1].capacity: must be >= 1, got 0``). :func:`dump` writes
a record back, and :func:`check` tells, without that round trip, whether :func:`load`
would take back what :func:`dump` writes. All follow the declarations of
:mod:`zeta_api.schema`.
"""

import enum
import math
import operator
import re
import sys
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from zeta_api.durations import format_duration, parse_duration
from zeta_api.errors import DurationError, ZetaApiError
from zeta_api.schema import (
    FieldPlan,
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

__all__ = ["check", "dump", "load"]

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


def _join(path: str, name: str) -> str:
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


class _Loader:
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
                raise self.fail(_join(path, str(key)), "unknown field")
        kwargs: dict[str, object] = {}
        for f in fields:
            where = _join(path, f.meta.wire)
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

    # --- checking records in place (see :func:`check`) -----------------------------

    def check_record(self, value: object, path: str) -> None:
        for f, fast in _checks(type(value)):
            v = getattr(value, f.attr)
            if v is None:
                if f.required and not f.type.optional:
                    raise self.fail(_join(path, f.meta.wire), "required")
            elif fast is None or not fast(v):
                self.check_value(f.type, f.meta, v, _join(path, f.meta.wire))
        self.rules(getattr(type(value), "cel_rules", ()), value, path)

    def check_value(self, t: TypeInfo, meta: Meta, v: object, path: str) -> None:
        if t.tag == "list" and isinstance(v, tuple):
            self.count(meta, len(v), path)
            item, fast = item_of(t), _fast(item_of(t), meta)
            if item.tag != "record" or not _records_pass(record_cls(item), v):
                for i, x in enumerate(v):
                    if fast is None or not fast(x):
                        self.check_element(item, meta, x, f"{path}[{i}]")
            self.unique(meta, v, path)
        elif t.tag == "map" and isinstance(v, Mapping):
            self.count(meta, len(v), path)
            item, fast = item_of(t), _fast(item_of(t), meta)
            for key, x in v.items():
                where = f"{path}[{key}]"
                if not str(key):  # dump writes str(key)
                    raise self.fail(where, "keys must be non-empty strings")
                if fast is None or not fast(x):
                    self.check_element(item, meta, x, where)
        elif t.tag == "record" and type(v) is record_cls(t):
            self.check_record(v, path)
        else:  # a leaf, or not the declared type: the loader decides on the wire form
            self.value(t, meta, dump_value(t, meta, v), path)
            return
        self.rules(meta.rules, v, path)

    def check_element(self, t: TypeInfo, meta: Meta, x: object, path: str) -> None:
        if t.tag == "record" and type(x) is record_cls(t):
            self.check_record(x, path)
        else:
            self.element(t, meta, dump_value(t, meta, x), path)


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
    return _Loader(error).record(cls, value, path, ignore)


def check(value: object, *, path: str, error: type[ZetaApiError]) -> None:
    """Raise ``error`` naming the field if :func:`load` would refuse ``dump(value)``.

    For what a process builds itself (the operator's routing table): checked where it
    stands, without serialising, parsing and building it all again. Each leaf first
    meets a quick test that passes only what the loader certainly takes; one that fails
    it goes to the loader itself, in its wire form, which takes it or raises its own
    message. The quick tests can only be stricter than the loader, so the verdict is
    always the loader's; records, arrays and maps are walked with the loader's own
    counts, uniqueness and rules.
    """
    _Loader(error).check_record(value, path)


# --- quick tests: what certainly passes the loader, decided without it -----------------

_INF = math.inf
Fast = Callable[[object], bool]


def _checks(cls: type) -> tuple[tuple[FieldPlan, Fast | None], ...]:
    found = _CHECKS.get(cls)
    if found is None:
        found = _CHECKS[cls] = tuple((f, _fast(f.type, f.meta)) for f in plan(cls))
    return found


_CHECKS: dict[type, tuple[tuple[FieldPlan, Fast | None], ...]] = {}


def _fast(t: TypeInfo, meta: Meta) -> Fast | None:
    """A quick test for a leaf value (not ``None``), or ``None``: ask the loader."""
    if meta.rules or meta.duration:
        return None
    if t.tag == "bool":
        return lambda v: v is True or v is False
    if t.tag == "enum":
        cls = t.py
        return lambda v: type(v) is cls
    if t.tag in ("int", "float"):
        return _fast_number(t, meta)
    if t.tag == "str" and meta.pattern is None and not meta.date_time:
        shortest, longest = meta.min_length or 0, meta.max_length or sys.maxsize
        return lambda v: type(v) is str and shortest <= len(v) <= longest
    return None


# --- quick tests by column: many records of one class at once -------------------------

Column = Callable[[list[Any]], bool]


def _records_pass(cls: type, items: tuple[object, ...]) -> bool:
    """Whether every item is a ``cls`` whose fields certainly pass the loader, tested a
    field at a time across all items with builtins (a table's thousands of endpoints
    cost no Python call per leaf). ``False`` says only: ask record by record."""
    columns = _columns(cls)
    if columns is None or not items or set(map(type, items)) != {cls}:
        return not items
    for attr, required, test in columns:
        values = list(map(operator.attrgetter(attr), items))
        present = [x for x in values if x is not None]
        if (required and len(present) < len(values)) or (present and not test(present)):
            return False
    return True


def _columns(cls: type) -> tuple[tuple[str, bool, Column], ...] | None:
    if cls not in _COLUMNS:
        tests = [(f, _column(f.type, f.meta)) for f in plan(cls)]
        columnable = not getattr(cls, "cel_rules", ()) and all(t for _, t in tests)
        _COLUMNS[cls] = (
            tuple((f.attr, f.required and not f.type.optional, t) for f, t in tests if t)
            if columnable
            else None
        )
    return _COLUMNS[cls]


_COLUMNS: dict[type, tuple[tuple[str, bool, Column], ...] | None] = {}


def _column(t: TypeInfo, meta: Meta) -> Column | None:
    """The quick test of :func:`_fast` for a whole column of values (none ``None``)."""
    if meta.rules or meta.duration:
        return None
    if t.tag == "record":
        cls = record_cls(t)
        return lambda values: _records_pass(cls, tuple(values))
    if t.tag in ("bool", "enum"):
        kinds = {bool} if t.tag == "bool" else {t.py}
        return lambda values: set(map(type, values)) <= kinds
    if t.tag in ("int", "float"):
        return _number_column(t, meta)
    if t.tag == "str" and meta.pattern is None and not meta.date_time:
        shortest, longest = meta.min_length or 0, meta.max_length or sys.maxsize
        return lambda values: (
            set(map(type, values)) == {str}
            and shortest <= min(map(len, values))
            and max(map(len, values)) <= longest
        )
    return None


def _number_column(t: TypeInfo, meta: Meta) -> Column:
    kinds = {int} if t.tag == "int" else {float, int}
    low = -_INF if meta.minimum is None else meta.minimum
    high = _INF if meta.maximum is None else meta.maximum
    exclusive = meta.exclusive_minimum

    def test(values: list[Any]) -> bool:
        if not set(map(type, values)) <= kinds:
            return False
        try:
            # NaN or an infinity makes the sum so; min and max may step over a NaN.
            if not math.isfinite(math.fsum(values)):
                return False
        except (OverflowError, ValueError):
            return False
        smallest = min(values)
        return bool(low < smallest if exclusive else low <= smallest) and max(values) <= high

    return test


def _fast_number(t: TypeInfo, meta: Meta) -> Fast:
    kinds = (int,) if t.tag == "int" else (float, int)  # `type(True)` is bool: never here
    low = -_INF if meta.minimum is None else meta.minimum
    high = _INF if meta.maximum is None else meta.maximum
    if meta.exclusive_minimum:
        return lambda v: type(v) in kinds and low < v <= high and -_INF < v < _INF  # type: ignore[operator]
    # NaN fails every comparison, so it always goes to the loader.
    return lambda v: type(v) in kinds and low <= v <= high and -_INF < v < _INF  # type: ignore[operator]


# --- dumping ---------------------------------------------------------------------------


def dump(value: object) -> dict[str, object]:
    """The wire form of a record: camelCase keys, ``None`` fields left out."""
    out: dict[str, object] = {}
    for attr, wire, t, meta, as_is in _dump_plan(type(value)):
        v = getattr(value, attr)
        if v is not None:
            out[wire] = v if type(v) in as_is else dump_value(t, meta, v)
    return out


def dump_value(t: TypeInfo, meta: Meta, v: object) -> object:
    if isinstance(v, tuple):
        return [dump_value(item_of(t), meta, x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): dump_value(item_of(t), meta, x) for k, x in v.items()}
    if t.tag == "record":
        return dump(v)
    if isinstance(v, enum.StrEnum):
        return v.value
    if t.tag == "float" and isinstance(v, int | float):
        # Durations go out as Go strings; other floats always as floats (never `1` for
        # `1.0`), one spelling per value so canonical forms and hashes agree.
        return format_duration(v) if meta.duration else float(v)
    return v


DumpStep = tuple[str, str, TypeInfo, Meta, frozenset[type]]
"""A field to dump: attribute, wire name, type, declaration, and the exact types of value
that go out as they are (what :func:`dump_value` would return unchanged)."""


def _dump_plan(cls: type) -> tuple[DumpStep, ...]:
    found = _DUMP_PLANS.get(cls)
    if found is None:
        found = _DUMP_PLANS[cls] = tuple(
            (f.attr, f.meta.wire, f.type, f.meta, _as_is(f.type, f.meta)) for f in plan(cls)
        )
    return found


def _as_is(t: TypeInfo, meta: Meta) -> frozenset[type]:
    # Most of a table's leaves: decided by one set lookup, not dump_value's questions.
    if t.tag in ("str", "int", "bool", "enum"):
        return frozenset({str, bool, int})
    if t.tag == "float" and not meta.duration:
        return frozenset({float})
    return frozenset()


_DUMP_PLANS: dict[type, tuple[DumpStep, ...]] = {}
