"""A request body: parsed once, and the served model name spliced into its bytes.

:func:`parse_body` reads the body as a JSON object (orjson when installed, ``json``
deciding what orjson refuses); :func:`rewrite_model` sets ``model`` to the name the pods
serve without re-serialising a long prompt. Pure: no I/O.
"""

import json
from collections.abc import Callable

from zeta_api import MAX_PRIORITY
from zeta_sidecar.errors import BadRequest

__all__ = ["parse_body", "rewrite_model", "with_priority"]

_FAST_LOADS: Callable[[bytes], object] | None
try:
    import orjson
except ImportError:  # optional: without it the standard parser serves alone
    _FAST_LOADS = None
else:
    _FAST_LOADS = orjson.loads
"""orjson's parser for request bodies when installed (several times faster than json's)."""
_INT64 = 2.0**63
_WHITESPACE = frozenset(b" \t\r\n")
_COLON = ord(":")


def rewrite_model(
    raw: bytes,
    name: str,
    served: str,
    served_json: bytes,
    *,
    name_json: bytes | None = None,
) -> bytes:
    """The body with ``model`` set to ``served``, splicing the original bytes if safe.

    Splicing avoids re-serialising a long prompt. It is done only when the literal
    ``"model"`` key occurs once and nothing is ``\\u``-escaped (an escaped key could hide
    the real top-level one); otherwise the body is serialised again. ``name_json`` is
    ``name`` as a JSON string if the caller has it (the snapshot keeps one per name).
    """
    if name == served:
        return raw
    key = raw.find(b'"model"')
    if key >= 0 and raw.find(b'"model"', key + 7) < 0 and b"\\u" not in raw:
        # After the key: optional whitespace, a colon, optional whitespace, the value.
        at = key + 7
        size = len(raw)
        while at < size and raw[at] in _WHITESPACE:
            at += 1
        if at < size and raw[at] == _COLON:
            at += 1
            while at < size and raw[at] in _WHITESPACE:
                at += 1
            value = json.dumps(name).encode() if name_json is None else name_json
            if raw.startswith(value, at):
                return raw[:key] + b'"model":' + served_json + raw[at + len(value) :]
    # Parsed again, by json: orjson (the caller's parse) turns integers beyond 64 bits
    # into floats, and they must go out as they came. Rare: the splice almost always fits.
    body = json.loads(raw)
    body["model"] = served
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def with_priority(payload: bytes, class_priority: int) -> bytes:
    """The body with vLLM's ``priority`` set from a traffic class's (vLLM serves lower
    values first; a class's higher priority must come first), spliced in after the
    opening brace when the body names none, else set by serialising it again."""
    value = MAX_PRIORITY - class_priority
    start = len(payload) - len(payload.lstrip())
    if b'"priority"' not in payload and payload[start : start + 1] == b"{":
        rest = payload[start + 1 :].lstrip()
        if rest[:1] not in (b"}", b""):  # not an empty object: a comma may follow
            return b'{"priority":%d,' % value + payload[start + 1 :]
    body = json.loads(payload)
    body["priority"] = value
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def parse_body(raw: bytes) -> dict[str, object]:
    """The body as a JSON object; 400 if it is none.

    orjson first when installed. What it refuses goes to ``json``, which decides: it
    accepts a few documents orjson does not (``NaN``, ``Infinity``, UTF-16, a BOM, lone
    surrogates), and its error messages name what is wrong and where. orjson reads
    integers beyond 64 bits as floats: at the top level (``max_tokens``...) json parses
    such a body again; deeper, nothing reads them, and :func:`rewrite_model` re-parses
    with json before it serialises.
    """
    body: object
    if _FAST_LOADS is None:
        body = _loads(raw)
    else:
        try:
            body = _FAST_LOADS(raw)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            body = _loads(raw)
        else:
            if type(body) is dict:
                for value in body.values():
                    # orjson turns integers beyond 64 bits into floats: json keeps them.
                    if type(value) is float and not -_INT64 <= value < _INT64:
                        body = _loads(raw)
                        break
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def _loads(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:  # a hostile nesting depth; orjson refuses past 1,024 levels too
        raise BadRequest("Request body is nested too deeply.") from None
