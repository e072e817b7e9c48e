"""Declarative fields: one declaration drives the parser, the dumper and the CRD schema.

A *record* is a frozen, slotted, keyword-only dataclass made with :func:`record`, whose
fields are declared with :func:`prop`: a description, a default, and the constraints
(range, length, pattern, item count, list keys). From those declarations,
:mod:`zeta_api.codec` loads and dumps the wire form (camelCase JSON) and
:mod:`zeta_api.openapi` emits the CRD's OpenAPI schema. So the apiserver and the
Python code cannot drift apart: both read the same declaration, and a test walks
both to prove it.

Supported field types: ``str``, ``int``, ``float``, ``bool``, a :class:`~enum.StrEnum`,
another record, ``tuple[X, ...]`` (a JSON array; tuples keep records immutable),
``Mapping[str, X]`` (a JSON object used as a map), and ``X | None``
(optional, ``null`` allowed). For arrays and maps, the count constraints
(``min_items``/``max_items``) apply to the collection and the others to each element.

Cross-field rules are :class:`Rule` objects: a CEL expression for the apiserver and
the same rule as a Python function, declared side by side on the record
(``cel_rules``) or on a field (``rules``).
"""

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal, TypeVar, dataclass_transform

from zeta_api.slots import slot_init

__all__ = [
    "FieldPlan",
    "Meta",
    "Rule",
    "TypeInfo",
    "Violation",
    "enum_cls",
    "fields_of",
    "format_number",
    "item_of",
    "matches",
    "plan",
    "prop",
    "record",
    "record_cls",
]

T = TypeVar("T")
#: What a rule's Python side returns on failure: (path below the record, message).
Violation = tuple[str, str]

_META_KEY = "zeta"


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One cross-field rule, written twice on purpose: CEL for the apiserver, Python here.

    ``check`` gets the record (or the field value, for a field rule) and returns
    ``None`` or a :data:`Violation` whose path is relative (``".virtualModels[0]"``),
    so the Python message can name the exact element the CEL message can only describe.
    """

    cel: str
    message: str
    check: Callable[[Any], Violation | None]
    #: CEL ``fieldPath``: where the apiserver reports the failure, relative to ``self``.
    field_path: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Meta:
    """The declaration of one field; see :func:`prop` for the meaning of each part."""

    description: str
    wire: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    min_items: int | None = None
    max_items: int | None = None
    list_map_keys: tuple[str, ...] = ()
    list_set: bool = False
    duration: bool = False
    min_seconds: float | None = None
    date_time: bool = False
    default_doc: str | None = None
    rules: tuple[Rule, ...] = ()


def prop(
    description: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    wire: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    min_items: int | None = None,
    max_items: int | None = None,
    list_map_keys: tuple[str, ...] = (),
    list_set: bool = False,
    duration: bool = False,
    min_seconds: float | None = None,
    date_time: bool = False,
    default_doc: str | None = None,
    rules: tuple[Rule, ...] = (),
) -> Any:
    """Declare a record field.

    ``wire`` overrides the camelCase wire name derived from the attribute name.
    ``duration`` marks a float of seconds written as a Go duration string;
    ``min_seconds`` bounds it (checked by CEL in the CRD). ``date_time`` marks an
    RFC 3339 timestamp string. ``list_map_keys``/``list_set`` make a list keyed or
    unique (``x-kubernetes-list-type``). ``default_doc`` documents a default the
    record computes itself (in ``__post_init__``), which the schema cannot express.
    """
    meta = Meta(
        description,
        wire or "",
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_minimum,
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        min_items=min_items,
        max_items=max_items,
        list_map_keys=list_map_keys,
        list_set=list_set,
        duration=duration,
        min_seconds=min_seconds,
        date_time=date_time,
        default_doc=default_doc,
        rules=rules,
    )
    field: Any = dataclasses.field(
        default=default, default_factory=default_factory, metadata={_META_KEY: meta}
    )
    return field


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(prop,))
def record(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen, slotted, keyword-only dataclass whose fields use :func:`prop`
    (with :func:`~zeta_api.slots.slot_init`'s faster ``__init__``: a table builds
    thousands of records per interval)."""
    return slot_init(dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls))


# --- field plans: the declarations, resolved once per record class ------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TypeInfo:
    """A field's type, reduced to what the codec and the schema generator branch on."""

    tag: Literal["str", "int", "float", "bool", "enum", "record", "list", "map"]
    py: type | None = None
    item: "TypeInfo | None" = None
    optional: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FieldPlan:
    """One field of a record: attribute, resolved metadata (wire name set), type, default."""

    attr: str
    meta: Meta
    type: TypeInfo
    required: bool
    default: object  # the dataclass default, or MISSING when it comes from a factory/none
    factory: Callable[[], object] | None


_SCALARS: dict[type, Literal["str", "int", "float", "bool"]] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
}


def _describe(hint: object) -> TypeInfo:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only `X | None` unions are supported, got {hint!r}")
        return dataclasses.replace(_describe(args[0]), optional=True)
    if origin is tuple:
        item, ellipsis = typing.get_args(hint)
        if ellipsis is not Ellipsis:
            raise TypeError(f"only `tuple[X, ...]` is supported, got {hint!r}")
        return TypeInfo("list", item=_describe(item))
    if origin is Mapping:
        key, value = typing.get_args(hint)
        if key is not str:
            raise TypeError(f"map keys must be str, got {key!r}")
        return TypeInfo("map", item=_describe(value))
    if isinstance(hint, type):
        if issubclass(hint, enum.StrEnum):
            return TypeInfo("enum", py=hint)
        if dataclasses.is_dataclass(hint):
            return TypeInfo("record", py=hint)
        if hint in _SCALARS:
            return TypeInfo(_SCALARS[hint])
    raise TypeError(f"unsupported field type {hint!r}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# Plans are built once per record class (a pure memo: classes never change).
_PLANS: dict[type, tuple[FieldPlan, ...]] = {}


def plan(cls: type) -> tuple[FieldPlan, ...]:
    """The fields of a record class, resolved from its declarations (memoised)."""
    found = _PLANS.get(cls)
    if found is None:
        found = _PLANS[cls] = _build_plan(cls)
    return found


def _build_plan(cls: type) -> tuple[FieldPlan, ...]:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META_KEY)
        if not isinstance(meta, Meta):
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with prop()")
        meta = dataclasses.replace(meta, wire=meta.wire or _camel(f.name))
        factory = None if f.default_factory is dataclasses.MISSING else f.default_factory
        required = f.default is dataclasses.MISSING and factory is None
        fields.append(
            FieldPlan(f.name, meta, _describe(hints[f.name]), required, f.default, factory)
        )
    return tuple(fields)


def fields_of(cls: type) -> dict[str, tuple[Meta, type | None]]:
    """The wire names of a record's fields, with their metadata and nested record type."""
    return {f.meta.wire: (f.meta, _nested_record(f.type)) for f in plan(cls)}


def _nested_record(t: TypeInfo) -> type | None:
    while t.item is not None:
        t = t.item
    return t.py if t.tag == "record" else None


def record_cls(t: TypeInfo) -> type:
    if t.py is None:  # pragma: no cover  (a _describe bug)
        raise TypeError(f"{t} carries no record class")
    return t.py


def enum_cls(t: TypeInfo) -> type[enum.StrEnum]:
    if t.py is None or not issubclass(t.py, enum.StrEnum):  # pragma: no cover
        raise TypeError(f"{t} carries no enum class")
    return t.py


def item_of(t: TypeInfo) -> TypeInfo:
    if t.item is None:  # pragma: no cover
        raise TypeError(f"{t} carries no item type")
    return t.item


def format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches an OpenAPI ``pattern`` the way the apiserver decides it."""
    return _compiled(pattern).search(text) is not None


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # OpenAPI patterns are unanchored searches; `$` must mean end of text, as in RE2,
    # not "before a final newline" as in Python.
    return re.compile(pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern)
