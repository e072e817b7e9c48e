"""Which headers cross the proxy: hop-by-hop ones never do (RFC 9110 section 7.6.1).

Pure functions over header multidicts. ``Host`` is not forwarded either: the upstream
address comes only from the routing table, and aiohttp sets ``Host`` for it. Body
framing (``Content-Length``, ``Transfer-Encoding``) is set again by whoever writes the
body, so both are dropped too.
"""

from collections.abc import Iterable, Mapping
from typing import Final

from multidict import CIMultiDict

__all__ = ["HOP_BY_HOP", "downstream_headers", "upstream_headers"]

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


def _filter(items: Iterable[tuple[str, str]], drop: frozenset[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in items if k.lower() not in drop)


def upstream_headers(incoming: Mapping[str, str]) -> CIMultiDict[str]:
    """Headers of a client request to forward to the pod."""
    return _filter(incoming.items(), _REQUEST_DROP | _named_in_connection(incoming))


def downstream_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    """Headers of a pod's response to forward to the client."""
    return _filter(upstream.items(), _RESPONSE_DROP | _named_in_connection(upstream))
