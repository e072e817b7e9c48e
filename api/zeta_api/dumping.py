"""Records to their wire form (JSON-like values): what :func:`zeta_api.codec.load` takes back.

Camel-case keys, ``None`` fields left out, durations as Go durations, enums as their
values. A plan per record class decides once which fields go out as they are (most of
a routing table's leaves), so dumping thousands of endpoints asks one set lookup per
field.
"""

import enum
from collections.abc import Mapping

from zeta_api.durations import format_duration
from zeta_api.schema import Meta, TypeInfo, item_of, plan

__all__ = ["dump", "dump_value"]


def dump(value: object) -> dict[str, object]:
    """The wire form of a record: camelCase keys, ``None`` fields left out."""
    out: dict[str, object] = {}
    for attr, wire, t, meta, as_is in _dump_plan(type(value)):
        v = getattr(value, attr)
        if v is not None:
            out[wire] = v if type(v) in as_is else dump_value(t, meta, v)
    return out


def dump_value(t: TypeInfo, meta: Meta, v: object) -> object:
    # The exact record class first (a table's every endpoint), before the ABC's isinstance.
    if t.tag == "record" and (type(v) is t.py or not isinstance(v, tuple | Mapping)):
        return dump(v)
    if isinstance(v, tuple):
        return [dump_value(item_of(t), meta, x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): dump_value(item_of(t), meta, x) for k, x in v.items()}
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
