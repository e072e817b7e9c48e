"""Hop-by-hop headers never cross the proxy, in either direction."""

from multidict import CIMultiDict

from zeta_sidecar.headers import downstream_headers, upstream_headers


def test_request_loses_hop_by_hop_host_and_framing() -> None:
    incoming = CIMultiDict(
        [
            ("Host", "evil.example:80"),
            ("Connection", "keep-alive, X-Secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("Proxy-Authorization", "Basic x"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Authorization", "Bearer sk-1"),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "a"),
            ("X-Request-Id", "b"),
        ]
    )
    out = upstream_headers(incoming)
    assert sorted(out) == [
        ("Authorization", "Bearer sk-1"),
        ("Content-Type", "application/json"),
        ("X-Request-Id", "a"),
        ("X-Request-Id", "b"),
    ]


def test_response_loses_hop_by_hop_and_framing() -> None:
    upstream = CIMultiDict(
        [
            ("Content-Type", "text/event-stream"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Content-Length", "5"),
            ("Server", "uvicorn"),
            ("X-Request-Id", "a"),
        ]
    )
    assert sorted(downstream_headers(upstream.items())) == [
        ("Content-Type", "text/event-stream"),
        ("X-Request-Id", "a"),
    ]
