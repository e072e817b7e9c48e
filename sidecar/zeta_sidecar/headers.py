"""Which headers cross the proxy: hop-by-hop ones never do (RFC 9110 section 7.6.1).

Pure functions over header multidicts. ``Host`` is not forwarded either: the upstream
address comes only from the routing table, and aiohttp sets ``Host`` for it. Body
framing (``Content-Length``, ``Transfer-Encoding``) is set again by whoever writes the
body, so both are dropped too.
"""

from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["HOP_BY_HOP", "downstream_headers", "request_head", "upstream_headers"]

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers meaningful for one connection only."""

_REQUEST_DROP: Final = HOP_BY_HOP | {"host", "content-length"}
_RESPONSE_DROP: Final = HOP_BY_HOP | {"content-length", "server", "date"}


def _named_in_connection(headers: Mapping[str, str]) -> frozenset[str]:
    """Extra hop-by-hop names a ``Connection`` header lists (``Connection: x-foo``)."""
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(","))


def _filter(items: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in items if k.lower() not in drop]


def upstream_headers(incoming: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers of a client request to forward to the pod."""
    return _filter(incoming.items(), _REQUEST_DROP | _named_in_connection(incoming))


def downstream_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers of a pod's response (as received, in order) to forward to the client."""
    pairs = list(upstream)
    drop = _RESPONSE_DROP
    for name, value in pairs:
        if name.lower() == "connection":
            drop = drop | {token.strip().lower() for token in value.split(",")}
    return _filter(pairs, drop)


def request_head(path: str, address: str, length: int, headers: Iterable[tuple[str, str]]) -> bytes:
    """The head of a ``POST`` to a pod, ready to write.

    ``headers`` must already be filtered (:func:`upstream_headers`); aiohttp refuses
    CR and LF in incoming header values, so none can smuggle a header in. Values are
    re-encoded as they came (UTF-8, undecodable bytes kept as they were).
    """
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {length}\r\n{lines}\r\n"
    return head.encode("utf-8", "surrogateescape")
