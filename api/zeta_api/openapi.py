"""OpenAPI v3 schemas from the declarations of :mod:`zeta_api.schema`, for the CRD.

Structural, as the apiserver requires: every object lists its properties, maps use
``additionalProperties``, and defaults, ranges, patterns, list keys and CEL rules come
straight from the field declarations.
"""

import dataclasses

from zeta_api.dumping import dump_value
from zeta_api.durations import DURATION_PATTERN, format_duration
from zeta_api.schema import (
    FieldPlan,
    Meta,
    Rule,
    TypeInfo,
    enum_cls,
    format_number,
    item_of,
    plan,
    record_cls,
)

__all__ = ["openapi"]

# Go's duration strings are short; the cap keeps the CEL cost estimate of `duration()` low.
_DURATION_MAX_LENGTH = 32


def openapi(cls: type) -> dict[str, object]:
    """The structural OpenAPI v3 schema of a record, as a CRD's ``openAPIV3Schema`` wants."""
    properties: dict[str, object] = {}
    required: list[str] = []
    for f in plan(cls):
        properties[f.meta.wire] = _field_schema(f)
        if f.required and not f.type.optional:
            required.append(f.meta.wire)
    schema: dict[str, object] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    _add_rules(schema, getattr(cls, "cel_rules", ()))
    return schema


def _field_schema(f: FieldPlan) -> dict[str, object]:
    description = f.meta.description
    default = _schema_default(f)
    if f.meta.default_doc:
        description += f" Defaults to {f.meta.default_doc}."
    elif default not in (None, {}, ""):
        description += f" Defaults to {_show(default)}."
    schema: dict[str, object] = {"description": description}
    schema.update(_type_schema(f.type, f.meta))
    _add_rules(schema, f.meta.rules)
    if default is not None:
        schema["default"] = default
    if f.type.optional:
        schema["nullable"] = True
    return schema


def _schema_default(f: FieldPlan) -> object:
    if f.meta.default_doc and not (isinstance(f.default, tuple) and f.default):
        # A computed default; a non-empty list default is real, only too long to show.
        return None
    if f.factory is not None:
        # An object whose fields all default: `{}` lets the apiserver fill them in, so
        # `kubectl get -o yaml` shows the effective settings. Empty lists/maps stay absent.
        return {} if f.type.tag == "record" else None
    if f.default is dataclasses.MISSING or f.default in (None, ()):
        return None
    return dump_value(f.type, f.meta, f.default)


def _show(default: object) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return format_number(default)
    return str(default)


def _type_schema(t: TypeInfo, meta: Meta) -> dict[str, object]:
    schema: dict[str, object]
    match t.tag:
        case "list":
            schema = {"type": "array", "items": _type_schema(item_of(t), meta)}
            _put(schema, minItems=meta.min_items, maxItems=meta.max_items)
            if meta.list_map_keys:
                schema["x-kubernetes-list-type"] = "map"
                schema["x-kubernetes-list-map-keys"] = list(meta.list_map_keys)
            elif meta.list_set:
                schema["x-kubernetes-list-type"] = "set"
        case "map":
            schema = {"type": "object", "additionalProperties": _type_schema(item_of(t), meta)}
            _put(schema, minProperties=meta.min_items, maxProperties=meta.max_items)
        case "record":
            schema = openapi(record_cls(t))
        case "enum":
            values = [m.value for m in enum_cls(t)]
            # maxLength is redundant for validation but bounds the CEL cost estimate of
            # rules that read the field (an unbounded string is costed at the request size).
            schema = {"type": "string", "enum": values, "maxLength": max(map(len, values))}
        case "bool":
            schema = {"type": "boolean"}
        case "int" | "float" if not meta.duration:
            schema = {"type": "integer" if t.tag == "int" else "number"}
            _put(schema, minimum=_tidy(meta.minimum), maximum=_tidy(meta.maximum))
            if meta.exclusive_minimum:
                schema["exclusiveMinimum"] = True
        case _:
            schema = _string_schema(meta)
    return schema


def _string_schema(meta: Meta) -> dict[str, object]:
    if meta.duration:
        schema: dict[str, object] = {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": _DURATION_MAX_LENGTH,
        }
        if meta.min_seconds is not None:
            least = format_duration(meta.min_seconds)
            # Guarded by the pattern: the apiserver runs CEL even when the pattern
            # fails, and duration() of a malformed string is an evaluation error.
            rule = f"!self.matches('{DURATION_PATTERN}') || duration(self) >= duration('{least}')"
            _add_rules(schema, (Rule(rule, f"must be at least {least}", lambda _: None),))
        return schema
    schema = {"type": "string"}
    _put(schema, minLength=meta.min_length, maxLength=meta.max_length, pattern=meta.pattern)
    if meta.date_time:
        schema["format"] = "date-time"
    return schema


def _tidy(x: float | None) -> float | None:
    """``1e6`` as ``1000000`` in the YAML, not ``1000000.0``."""
    return int(x) if x is not None and float(x).is_integer() else x


def _put(schema: dict[str, object], **values: object) -> None:
    schema.update({k: v for k, v in values.items() if v is not None})


def _add_rules(schema: dict[str, object], rules: tuple[Rule, ...]) -> None:
    if not rules:
        return
    validations = []
    for rule in rules:
        entry = {"rule": rule.cel, "message": rule.message}
        if rule.field_path:
            entry["fieldPath"] = rule.field_path
        validations.append(entry)
    schema["x-kubernetes-validations"] = validations
