"""The routing table as text (``routing.json``): parsed strictly, encoded once.

The sidecar must refuse anything it does not fully understand and keep serving its
last good table, so :func:`parse_routing_table` is strict: a size limit before
parsing, no duplicate JSON keys, no NaN or Infinity, no unknown fields, and the
cross-field rules below.

:func:`dump_routing_table` writes the canonical form (sorted keys, compact: json's
text to the byte, written by orjson where it cannot differ), and
:func:`content_hash` hashes it without ``revision`` and ``generatedAt``, so the
operator can tell a material change from a mere re-publication and spare watchers
and the kubelet needless updates. :func:`encode_routing_table` gives both from one
serialisation, after checking the table where it stands for everything the parser
would refuse (:func:`zeta_api.checking.check`, the cross-field rules, the size): what
the operator builds is valid before it is written, without being parsed back. When
every address is a distinct IPv4 ``ip:port`` of one spelling (as the operator writes
them), the cross-field rules read the endpoints a column at a time.
"""

import functools
import hashlib
import ipaddress
import itertools
import json
import operator
import re
from dataclasses import dataclass

from zeta_api.checking import check
from zeta_api.codec import load
from zeta_api.dumping import dump
from zeta_api.errors import TableError
from zeta_api.models import MODEL_NAME_MAX_LENGTH, MODEL_NAME_PATTERN
from zeta_api.schema import matches
from zeta_api.table import (
    DEFAULT_MAX_BYTES,
    TABLE_API_VERSION,
    TABLE_KIND,
    Endpoint,
    RoutingTable,
)

__all__ = [
    "EncodedTable",
    "content_hash",
    "dump_routing_table",
    "encode_routing_table",
    "parse_routing_table",
]

# Fields left out of the content hash: they change on every publication.
_VOLATILE = ("revision", "generatedAt")


def parse_routing_table(text: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RoutingTable:
    """Parse and validate a table; raise :class:`TableError` saying what is wrong."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > max_bytes:
        raise TableError(f"table is {len(raw)} bytes, over the limit of {max_bytes}")
    try:
        doc = json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, _Refused) as exc:
        raise TableError(f"table is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise TableError(f"table must be a JSON object, got {type(doc).__name__}")
    return _from_document(doc)


def _from_document(doc: dict[str, object]) -> RoutingTable:
    api_version, kind = doc.pop("apiVersion", None), doc.pop("kind", None)
    if api_version != TABLE_API_VERSION:
        raise TableError(
            f"apiVersion: unsupported {api_version!r}; this build reads {TABLE_API_VERSION!r}"
        )
    if kind != TABLE_KIND:
        raise TableError(f"kind: must be {TABLE_KIND!r}, got {kind!r}")
    table = load(RoutingTable, doc, path="", error=TableError)
    _check(table)
    return table


@dataclass(frozen=True, slots=True)
class EncodedTable:
    """A table ready to publish: its canonical JSON, and that JSON's content hash."""

    text: str
    content_hash: str
    size: int
    """Bytes of ``text`` in UTF-8."""


def encode_routing_table(
    table: RoutingTable, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> EncodedTable:
    """The canonical JSON of a table and its content hash, from one serialisation;
    raise :class:`TableError` saying what :func:`parse_routing_table` would refuse.

    The table is checked where it stands (each field as the parser would check it,
    then the cross-field rules and the size), not by parsing its JSON back."""
    fields = _serialised(table)
    text = _object(fields)
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:  # a lone surrogate, which UTF-8 cannot carry
        raise TableError(f"table holds text UTF-8 cannot carry: {exc}") from exc
    check(table, path="", error=TableError)
    _check(table)
    if size > max_bytes:
        raise TableError(f"table is {size} bytes, over the limit of {max_bytes}")
    return EncodedTable(text, _hash(fields), size)


def dump_routing_table(table: RoutingTable, *, validate: bool = True) -> str:
    """The canonical JSON of a table: sorted keys, compact, UTF-8 as is.

    With ``validate`` (the default) the table is checked first, so the operator can
    never publish a table the sidecars would refuse (see :func:`encode_routing_table`).
    """
    if validate:
        return encode_routing_table(table).text
    return _object(_serialised(table))


def content_hash(table: RoutingTable) -> str:
    """SHA-256 (hex) of the canonical form without ``revision`` and ``generatedAt``."""
    return _hash(_serialised(table))


def _document(table: RoutingTable) -> dict[str, object]:
    return {"apiVersion": TABLE_API_VERSION, "kind": TABLE_KIND, **dump(table)}


def _serialised(table: RoutingTable) -> list[tuple[str, str]]:
    """Each top-level field as ``"key":value`` in canonical form, in key order: the
    pieces of both the whole JSON and the JSON hashed, serialised once."""
    return [
        (key, f"{_canonical(key)}:{_canonical(value)}")
        for key, value in sorted(_document(table).items())
    ]


def _object(fields: list[tuple[str, str]]) -> str:
    # The canonical form of a JSON object is its members in key order, comma-separated.
    return "{" + ",".join(member for _, member in fields) + "}"


def _hash(fields: list[tuple[str, str]]) -> str:
    stable = _object([(key, member) for key, member in fields if key not in _VOLATILE])
    return hashlib.sha256(stable.encode()).hexdigest()


def _canonical(doc: object) -> str:
    if _ORJSON_OPTIONS is not None:
        try:
            text = orjson.dumps(doc, default=_refuse, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError: beyond its types; json decides
            pass
        else:
            if not _spelt_apart(text):
                return text
    try:
        return json.dumps(
            doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:  # NaN or Infinity set from Python
        raise TableError(f"table holds a value JSON cannot carry: {exc}") from exc


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is left to json")


# orjson writes a table several times faster than json, to the same text but for the
# cases below, which go to json. Only JSON's own types: subclasses (enums), dataclasses
# and datetimes go to _refuse, hence to json, which writes or refuses them as before.
_ORJSON_OPTIONS: int | None
try:
    import orjson
except ImportError:  # optional: without it json serialises alone, to the same text
    _ORJSON_OPTIONS = None
else:
    _ORJSON_OPTIONS = (
        orjson.OPT_SORT_KEYS
        | orjson.OPT_PASSTHROUGH_SUBCLASS
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
    )


def _spelt_apart(text: str) -> bool:
    """Whether orjson's ``text`` may differ from json's (found by comparing both over
    every float exponent, code point and integer width; integers beyond 64 bits it
    refuses): floats of 1e-10 to 1e-4, which json writes as 1e-05 and orjson as 0.00001
    or 1e-5; and null, which orjson also writes for NaN and the infinities json refuses.
    A dumped document holds no null of its own (None fields are left out), so a match,
    even inside a string, only sends the document to json."""
    # Three searches, not one alternation: a literal prefix lets re skip ahead (4x faster).
    return "null" in text or "0.0000" in text or _SHORT_EXPONENT.search(text) is not None


_SHORT_EXPONENT = re.compile(r"e-[0-9](?![0-9])")


class _Refused(ValueError):
    """Raised inside the JSON decoder's hooks."""


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> object:
    raise _Refused(f"{name} is not a number JSON allows")


# --- cross-field rules --------------------------------------------------------------


def _check(table: RoutingTable) -> None:
    distinct = _distinct_ipv4(table)
    seen: dict[tuple[object, int], tuple[str, int]] = {}
    positive_models = 0
    any_endpoint = False
    for name, model in table.models.items():
        where = f"models[{name}]"
        _check_name(name, where)
        if distinct:
            serving, positive_endpoints = _tally(model.endpoints, where)
        else:
            serving, positive_endpoints = _tally_one_by_one(model.endpoints, where, name, seen)
        if serving and not positive_endpoints:
            raise TableError(f"{where}.endpoints: every endpoint weight is 0")
        if model.weight > 0 and not positive_endpoints:
            raise TableError(f"{where}.weight: must be 0 for a model with no endpoint to serve")
        positive_models += model.weight > 0
        any_endpoint = any_endpoint or serving > 0
    if not positive_models and any_endpoint:
        # No endpoint to serve is a real state (no pod ready, or all draining: the sidecar
        # answers 503); endpoints to serve and yet no weight anywhere is a broken table.
        raise TableError("models: every model weight is 0")
    for name, virtual in table.virtual_models.items():
        where = f"virtualModels[{name}]"
        _check_name(name, where)
        if name in table.models:
            raise TableError(f"{where}: {name!r} is already the name of a model")
        for j, candidate in enumerate(virtual.candidates):
            if candidate not in table.models:
                raise TableError(
                    f"{where}.candidates[{j}]: {candidate!r} is not a model of the table"
                )


def _tally_one_by_one(
    endpoints: tuple[Endpoint, ...],
    where: str,
    name: str,
    seen: dict[tuple[object, int], tuple[str, int]],
) -> tuple[int, int]:
    """Serving and positively weighted endpoints, each address keyed and compared."""
    positive = serving = 0
    for i, ep in enumerate(endpoints):
        # Paths are spelt only for a message: a table has thousands of endpoints.
        key = _ipv4_key(ep.address) or _parse_address(ep.address, f"{where}.endpoints[{i}].address")
        if key in seen:
            also = "models[{}].endpoints[{}].address".format(*seen[key])
            raise TableError(
                f"{where}.endpoints[{i}].address: duplicate {ep.address!r} (also {also})"
            )
        seen[key] = name, i
        _check_draining(ep, where, i)
        serving += not ep.draining
        positive += ep.weight > 0
    return serving, positive


def _tally(endpoints: tuple[Endpoint, ...], where: str) -> tuple[int, int]:
    """As :func:`_tally_one_by_one`, for addresses known valid and distinct: a column
    at a time, with builtins (thousands of endpoints, no Python call per endpoint)."""
    draining = list(map(_DRAINING, endpoints))
    for i in itertools.compress(range(len(draining)), draining):
        _check_draining(endpoints[i], where, i)
    return len(draining) - sum(draining), sum(map(_POSITIVE, map(_WEIGHT, endpoints)))


def _check_draining(ep: Endpoint, where: str, i: int) -> None:
    if ep.draining and ep.weight > 0:
        raise TableError(
            f"{where}.endpoints[{i}].weight: must be 0 for a draining endpoint, got {ep.weight!r}"
        )


_DRAINING = operator.attrgetter("draining")
_WEIGHT = operator.attrgetter("weight")
_POSITIVE = functools.partial(operator.lt, 0)  # 0 < w, as w > 0


def _distinct_ipv4(table: RoutingTable) -> bool:
    """Whether every address of the table is a dotted-quad IPv4 ``ip:port`` as
    :func:`_ipv4_key` takes it, with a port of no leading zero, and no two alike: then
    each text is its own key, and no address can be refused or found twice."""
    addresses = [ep.address for model in table.models.values() for ep in model.endpoints]
    return all(map(_IPV4_ADDRESS.fullmatch, addresses)) and len(set(addresses)) == len(addresses)


def _check_name(name: str, where: str) -> None:
    if len(name) > MODEL_NAME_MAX_LENGTH or not matches(MODEL_NAME_PATTERN, name):
        raise TableError(f"{where}: not a valid model name (must match {MODEL_NAME_PATTERN})")


# Dotted-quad IPv4 as ipaddress takes it (decimal, no leading zero): one spelling per
# address, so the text itself is the key. It spares ipaddress' parse for nearly every pod.
_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


_IPV4_ADDRESS = re.compile(
    _IPV4.pattern + ":(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}"
    "|655[0-2][0-9]|6553[0-5])"
)
"""An IPv4 ``ip:port`` of one spelling only (port 1 to 65535, no leading zero)."""


def _ipv4_key(address: str) -> tuple[object, int] | None:
    """The key of a valid IPv4 ``ip:port``, or ``None``: ask :func:`_parse_address`."""
    host, _, port = address.rpartition(":")
    if _IPV4.fullmatch(host) and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535:
        return host, int(port)
    return None


def _parse_address(address: str, where: str) -> tuple[object, int]:
    """``ip:port`` to a comparable key: two spellings of one IPv6 address are one pod."""
    host, _, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise TableError(f"{where}: must be ip:port with an IP address, got {address!r}") from None
    if bracketed != (ip.version == 6):
        raise TableError(f"{where}: IPv6 addresses are written [ip]:port, got {address!r}")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise TableError(f"{where}: port must be 1..65535, got {address!r}")
    # IPv4 keys are their canonical text, as :func:`_ipv4_key` gives them.
    return (str(ip) if ip.version == 4 else ip), int(port)
