"""Which headers cross the proxy: hop-by-hop ones never do (RFC 9110 section 7.6.1).

Pure functions over header multidicts. The client's ``Host`` is not forwarded either:
the pod's address comes only from the routing table, and :func:`request_head` writes
``Host`` (and ``Content-Length``) for it. Body framing (``Content-Length``,
``Transfer-Encoding``) is set again by whoever writes the body, :func:`request_head`
towards the pod and the traffic server (:mod:`~zeta_sidecar.http_server`) towards the
client, so both are dropped, and so is ``Expect`` (the sidecar answers it). A pod's
``Server`` and ``Date`` stay behind: the traffic server writes its own ``Date``.
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

_REQUEST_DROP: Final = HOP_BY_HOP | {"host", "content-length", "expect"}
"""``Expect`` too: the sidecar answers ``100-continue`` itself, once the body is within
its limit, and sends the pod the whole body at once; a pod asked to expect would answer
an interim ``100`` nobody waits for."""
_RESPONSE_DROP: Final = HOP_BY_HOP | {"content-length", "server", "date"}


def _connection_tokens(value: str) -> frozenset[str]:
    """Extra hop-by-hop names a ``Connection`` header lists (``Connection: x-foo``)."""
    return frozenset(token.strip().lower() for token in value.split(","))


# Both filters run on every request: one pass, each name lowered once, and the drop set
# widened only when a Connection header names extra hop-by-hop headers (rare: clients
# and pods send "keep-alive" or "close", which are not header names anyway).


def upstream_headers(incoming: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers of a client request to forward to the pod."""
    connection = incoming.get("Connection")
    drop = _REQUEST_DROP | _connection_tokens(connection) if connection else _REQUEST_DROP
    return [(k, v) for k, v in incoming.items() if k.lower() not in drop]


def downstream_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers of a pod's response (as received, in order) to forward to the client."""
    kept: list[tuple[str, str]] = []
    extra: frozenset[str] | None = None
    for name, value in upstream:
        lower = name.lower()
        if lower in _RESPONSE_DROP:
            if lower == "connection":
                extra = (
                    _connection_tokens(value)
                    if extra is None
                    else extra | _connection_tokens(value)
                )
            continue
        kept.append((name, value))
    if extra:
        kept = [(k, v) for k, v in kept if k.lower() not in extra]
    return kept


def request_head(path: str, address: str, length: int, headers: Iterable[tuple[str, str]]) -> bytes:
    """The head of a ``POST`` to a pod, ready to write.

    ``headers`` must already be filtered (:func:`upstream_headers`); llhttp refuses
    CR, LF and NUL in incoming header values, so none can smuggle a header in. Values are
    re-encoded as they came (UTF-8, undecodable bytes kept as they were).
    """
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {length}\r\n{lines}\r\n"
    return head.encode("utf-8", "surrogateescape")
