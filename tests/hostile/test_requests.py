"""Hostile clients: request smuggling never reaches a pod, no request can steer the
sidecar to an address outside its table, a deeply nested body is a clean 400, and large
bodies do not stall everyone else.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import pytest

from zeta_testbed.sidecar import wait_until

from .conftest import HANG, MODEL, Hostile, echo_of
from .malicious_pod import MaliciousPod, PodProcess
from .raw import Client, build_request, openai_error, post

PATH = "/v1/chat/completions"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()


def smuggling(case: str) -> bytes:
    """A request whose framing is ambiguous, with a second request hidden behind it."""
    hidden = post(BODY, headers=[("X-Hostile-Case", f"smuggled-{case}")])
    top = f"POST {PATH} HTTP/1.1\r\nHost: sidecar\r\nX-Hostile-Case: {case}\r\n"
    chunked = f"{top}Transfer-Encoding: chunked\r\n\r\n".encode()
    n = len(BODY)
    requests = {
        "content-length-and-chunked": (
            f"{top}Content-Length: {n + 7}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"0\r\n\r\n"
            + BODY
        ),
        "chunked-and-content-length": (
            f"{top}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n".encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (n, BODY)
        ),
        "duplicate-content-length-conflicting": (
            f"{top}Content-Length: {n}\r\nContent-Length: 5\r\n\r\n".encode() + BODY
        ),
        "duplicate-content-length-same": (
            f"{top}Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n".encode() + BODY
        ),
        "content-length-signed": f"{top}Content-Length: +{n}\r\n\r\n".encode() + BODY,
        "content-length-underscore": (
            f"{top}Content-Length: {n // 10}_{n % 10}\r\n\r\n".encode() + BODY
        ),
        "content-length-space-before-colon": f"{top}Content-Length : {n}\r\n\r\n".encode() + BODY,
        "transfer-encoding-not-last": (
            f"{top}Transfer-Encoding: chunked, identity\r\nContent-Length: {n}\r\n\r\n".encode()
            + BODY
        ),
        "transfer-encoding-obfuscated": (
            f"{top}Transfer-Encoding: xchunked\r\n\r\n".encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (n, BODY)
        ),
        "obs-fold": (
            f"{top}X-Folded: a\r\n Content-Length: 5\r\nContent-Length: {n}\r\n\r\n".encode() + BODY
        ),
        "bare-lf": (
            f"POST {PATH} HTTP/1.1\nHost: sidecar\nX-Hostile-Case: {case}\n"
            f"Content-Length: {n}\n\n".encode()
            + BODY
        ),
        "bare-lf-in-header": (
            f"{top}X-A: b\nContent-Length: 5\r\nContent-Length: {n}\r\n\r\n".encode() + BODY
        ),
        "chunk-size-negative": chunked + b"-1\r\n" + BODY + b"\r\n0\r\n\r\n",
        "chunk-size-hex-prefixed": chunked + b"0x%x\r\n%s\r\n0\r\n\r\n" % (n, BODY),
        "chunk-size-over-64-bits": chunked + b"1000000000000000%x\r\n%s\r\n0\r\n\r\n" % (n, BODY),
        "chunk-data-without-crlf": chunked + b"%x\r\n%sXX0\r\n\r\n" % (n, BODY),
        "nul-in-header-value": f"{top}X-A: a\x00b\r\nContent-Length: {n}\r\n\r\n".encode() + BODY,
        "cr-in-header-value": f"{top}X-A: a\rb\r\nContent-Length: {n}\r\n\r\n".encode() + BODY,
        "nul-in-target": (
            f"POST {PATH}\x00 HTTP/1.1\r\nHost: sidecar\r\nX-Hostile-Case: {case}\r\n"
            f"Content-Length: {n}\r\n\r\n".encode()
            + BODY
        ),
    }
    return requests[case] + hidden


SMUGGLING = [
    "bare-lf",
    "bare-lf-in-header",
    "chunk-data-without-crlf",
    "chunk-size-hex-prefixed",
    "chunk-size-negative",
    "chunk-size-over-64-bits",
    "chunked-and-content-length",
    "content-length-and-chunked",
    "content-length-signed",
    "content-length-space-before-colon",
    "content-length-underscore",
    "cr-in-header-value",
    "duplicate-content-length-conflicting",
    "duplicate-content-length-same",
    "nul-in-header-value",
    "nul-in-target",
    "obs-fold",
    "transfer-encoding-not-last",
    "transfer-encoding-obfuscated",
]


@pytest.mark.parametrize("case", SMUGGLING)
def test_smuggling_gets_400_and_reaches_no_pod(hostile: Hostile, case: str) -> None:
    with hostile.client() as client:
        client.send(smuggling(case))
        response = client.read_response(HANG)
        assert response.status == 400, (response.status, response.body[:300])
        assert client.closed_within(HANG), "the connection stayed open after a bad request"
        assert b"HTTP/1.1" not in client.leftover, f"a second answer: {client.leftover!r}"
    # Whatever was in flight has reached the pod by the time a later request has.
    echo_of(hostile.ask("after-" + case))
    assert hostile.pod.requests(case) == []
    assert hostile.pod.requests(f"smuggled-{case}") == []


def aimed_elsewhere(decoy: MaliciousPod) -> dict[str, tuple[bytes, int]]:
    """Requests naming the decoy's address in every place a client controls."""
    there = decoy.address
    url = f"http://{there}{PATH}"

    def chat(model: str, *headers: tuple[str, str], target: str = PATH) -> bytes:
        body = json.dumps({"model": model, "messages": []}).encode()
        return build_request(
            "POST",
            target,
            headers=[("Content-Type", "application/json"), *headers],
            body=body,
        )

    return {
        "model-is-an-address": (chat(there), 404),
        "model-is-a-url": (chat(url), 404),
        "model-with-userinfo": (chat(f"{MODEL}@{there}"), 404),
        "model-with-path": (chat(f"../{there}/{MODEL}"), 404),
        "host-header": (
            build_request(
                "POST",
                PATH,
                host=there,
                headers=[("Content-Type", "application/json")],
                body=BODY,
            ),
            200,
        ),
        "absolute-uri": (chat(MODEL, target=url), 200),
        "x-forwarded": (
            chat(
                MODEL,
                ("X-Forwarded-Host", there),
                ("X-Forwarded-For", "127.0.0.1"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Port", str(decoy.port)),
                ("Forwarded", f"for=127.0.0.1;host={there};proto=http"),
                ("X-Real-IP", "127.0.0.1"),
                ("X-Original-URL", url),
                ("X-Rewrite-URL", url),
            ),
            200,
        ),
        "path-with-authority": (chat(MODEL, target=f"//{there}{PATH}"), 404),
        "connect": (build_request("CONNECT", there, host=there, content_length=False), 404),
    }


def test_no_request_reaches_an_address_outside_the_table(
    hostile: Hostile, decoy: MaliciousPod
) -> None:
    served = 0
    for case, (request, status) in aimed_elsewhere(decoy).items():
        with hostile.client() as client:
            client.send(request)
            response = client.read_response(HANG)
        if status == 200:
            assert response.status == 200, (case, response.status, response.body[:300])
            served += 1
        else:
            openai_error(response, status)
    # Every request that was served went to the table's pod, in origin form, with the
    # pod's address as Host.
    wait_until(lambda: len(hostile.pod.requests("")) >= served, within=HANG, what="requests")
    for got in hostile.pod.requests(""):
        assert got.request_line == f"POST {PATH} HTTP/1.1", got.request_line
        assert got.header("host") == hostile.pod.address, got.head
    assert decoy.connections == 0, "the sidecar connected to an address outside its table"


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"m","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"model":"m","x":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["arrays", "objects", "top-level"],
)
def test_deeply_nested_json_is_a_400(hostile: Hostile, body: bytes) -> None:
    with hostile.client() as client:
        client.send(post(body, headers=[("X-Hostile-Case", "nested")]))
        openai_error(client.read_response(HANG), 400, "invalid_request")
    assert hostile.pod.requests("nested") == []


BIG = 8 * 1024 * 1024 - 4096
BIGS = [(i, j) for i in range(3) for j in range(2)]
"""(client, request) of the big requests."""


def test_big_bodies_do_not_stall_small_requests(hostile: Hostile) -> None:
    """Three clients send 8 MB bodies, two each, while another sends small requests
    back to back: all succeed, and the small ones keep flowing meanwhile. The small
    requests' delays are a figure for the report, not an assertion.

    The pod runs in a process of its own, and the big requests are built beforehand:
    the delays measured are the sidecar's, not this process's.
    """
    pod = PodProcess()
    got: list[tuple[str, str, int]] = []
    try:
        hostile.point_at(pod.address)
        idle, loaded, errors = _measure(hostile.port)
    finally:
        hostile.point_at(hostile.pod.address)
        got = pod.stop()
    assert not errors, errors
    big = [length for case, _, length in got if case == "big"]
    assert len(big) == len(BIGS)
    assert all(length == BIG for length in big)
    assert len(loaded) >= 3, "small requests did not flow while big bodies were sent"
    figures = {
        "idle_p50_ms": statistics.median(idle) * 1000,
        "idle_p99_ms": statistics.quantiles(idle, n=100, method="inclusive")[98] * 1000,
        "loaded_p50_ms": statistics.median(loaded) * 1000,
        "loaded_p99_ms": statistics.quantiles(loaded, n=100, method="inclusive")[98] * 1000,
        "loaded_max_ms": max(loaded) * 1000,
        "loaded_count": len(loaded),
    }
    print("small request delays:", json.dumps(figures))


def _measure(port: int) -> tuple[list[float], list[float], list[BaseException]]:
    """(delays of small requests alone, delays while big bodies are sent, errors)."""
    prefix = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": ""}]})
    # The body padded to exactly BIG bytes, so the pod's record shows nothing was cut.
    pad = BIG - len(prefix.encode())
    doc = {"model": MODEL, "messages": [{"role": "user", "content": "x" * pad}]}
    assert len(json.dumps(doc).encode()) == BIG
    bigs = {
        (i, j): post(doc, headers=[("X-Hostile-Case", "big"), ("X-Hostile-Marker", f"big-{i}-{j}")])
        for i, j in BIGS
    }
    errors: list[BaseException] = []
    big_done = threading.Event()

    def big_sender(i: int) -> None:
        try:
            for j in range(2):
                with Client(port) as client:
                    client.send(bigs[i, j], timeout=30)
                    assert echo_of(client.read_response(30))["marker"] == f"big-{i}-{j}"
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def small_delays(until: threading.Event, at_most: int) -> list[float]:
        delays = []
        with Client(port) as client:
            for k in range(at_most):
                if until.is_set():
                    break
                request = post(
                    BODY, headers=[("X-Hostile-Case", "small"), ("X-Hostile-Marker", f"s{k}")]
                )
                start = time.monotonic()
                client.send(request)
                assert echo_of(client.read_response(HANG))["marker"] == f"s{k}"
                delays.append(time.monotonic() - start)
        return delays

    idle = small_delays(threading.Event(), 200)
    senders = [threading.Thread(target=big_sender, args=(i,)) for i in range(3)]
    for t in senders:
        t.start()

    def watch() -> None:
        for t in senders:
            t.join(60)
        big_done.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    loaded = small_delays(big_done, 100_000)
    watcher.join(60)
    return idle, loaded, errors


def test_hop_by_hop_request_headers_never_reach_the_pod(hostile: Hostile) -> None:
    """What is meant for one connection (RFC 9110 section 7.6.1), and what a client
    names as such in ``Connection``, stops at the sidecar."""
    hop = [
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "for the sidecar only"),
        ("Keep-Alive", "timeout=5"),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "Basic c2VjcmV0"),
        ("Proxy-Connection", "keep-alive"),
        ("Trailer", "X-Checksum"),
    ]
    with hostile.client() as client:
        client.send(hostile.request_bytes("hop", marker="hop", headers=hop))
        assert echo_of(client.read_response(HANG))["marker"] == "hop"
    [got] = hostile.pod.requests("hop")
    names = {name for name, _ in got.headers}
    assert not names & {name.lower() for name, _ in hop}, got.head
    assert got.header("content-length") == str(len(got.body))
