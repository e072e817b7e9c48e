"""Whether the codec's loader would take back what ``dump`` writes, without the round trip.

:func:`check` walks a record a process built itself (the operator's routing table)
where it stands. Each leaf first meets a quick test that passes only values the loader
certainly takes; one that fails it goes to the loader itself, in its wire form, whose
verdict is final. Tests by column decide a field across thousands of records (a
table's endpoints) with builtins, with no Python call per leaf.
"""

import math
import operator
import sys
from collections.abc import Callable, Mapping
from typing import Any

from zeta_api.codec import Loader, join
from zeta_api.dumping import dump_value
from zeta_api.errors import ZetaApiError
from zeta_api.schema import FieldPlan, Meta, TypeInfo, item_of, plan, record_cls

__all__ = ["check"]

# --- quick tests: what certainly passes the loader, decided without it -----------------

_INF = math.inf
Fast = Callable[[object], bool]


def _fast_checks(cls: type) -> tuple[tuple[FieldPlan, Fast | None], ...]:
    found = _CHECKS.get(cls)
    if found is None:
        found = _CHECKS[cls] = tuple((f, _fast_check(f.type, f.meta)) for f in plan(cls))
    return found


_CHECKS: dict[type, tuple[tuple[FieldPlan, Fast | None], ...]] = {}


def _fast_check(t: TypeInfo, meta: Meta) -> Fast | None:
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
    """The quick test of :func:`_fast_check` for a whole column of values (none ``None``)."""
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


class _Checker(Loader):
    """The loader's own counts, uniqueness and rules, applied to a built record."""

    def check_record(self, value: object, path: str) -> None:
        for f, fast in _fast_checks(type(value)):
            v = getattr(value, f.attr)
            if v is None:
                if f.required and not f.type.optional:
                    raise self.fail(join(path, f.meta.wire), "required")
            elif fast is None or not fast(v):
                self.check_value(f.type, f.meta, v, join(path, f.meta.wire))
        self.rules(getattr(type(value), "cel_rules", ()), value, path)

    def check_value(self, t: TypeInfo, meta: Meta, v: object, path: str) -> None:
        if t.tag == "list" and isinstance(v, tuple):
            self.count(meta, len(v), path)
            item, fast = item_of(t), _fast_check(item_of(t), meta)
            if item.tag != "record" or not _records_pass(record_cls(item), v):
                for i, x in enumerate(v):
                    if fast is None or not fast(x):
                        self.check_element(item, meta, x, f"{path}[{i}]")
            self.unique(meta, v, path)
        elif t.tag == "map" and isinstance(v, Mapping):
            self.count(meta, len(v), path)
            item, fast = item_of(t), _fast_check(item_of(t), meta)
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
    _Checker(error).check_record(value, path)
