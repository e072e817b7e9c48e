"""Pods that answer with broken or hostile HTTP/1.1: every answer the sidecar cannot frame
exactly is a clean OpenAI-style 502 (or 504 when the pod is too slow), a stream already
started ends with an error event and a clean end, no client waits longer than the
table's timeouts, memory stays bounded, and the broken connection never carries another
request.
"""

from __future__ import annotations

import json
import zlib

import pytest

from zeta_testbed.sidecar import wait_until

from .conftest import HANG, Hostile, echo_of
from .malicious_pod import (
    body_of,
    chunk,
    close,
    hold,
    pattern,
    repeat,
    script,
    send,
    sleep,
    sse_head,
    trickle,
)
from .raw import Closed, Response, openai_error

BODY = b'{"a":"bcde"}'  # 12 bytes
JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
CHUNKED = JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'

# Answers the sidecar must refuse as a whole (502), sent in one write; the pod then keeps
# the connection open, so that waiting for more bytes shows up as a 504, not a 502.
MALFORMED = {
    "duplicate-content-length-same": JSON_HEAD
    + b"Content-Length: 12\r\nContent-Length: 12\r\n\r\n"
    + BODY,
    "duplicate-content-length-conflicting": JSON_HEAD
    + b"Content-Length: 12\r\nContent-Length: 14\r\n\r\n"
    + BODY,
    "content-length-signed": JSON_HEAD + b"Content-Length: +12\r\n\r\n" + BODY,
    "content-length-underscore": JSON_HEAD + b"Content-Length: 1_2\r\n\r\n" + BODY,
    "content-length-and-chunked": JSON_HEAD
    + b"Content-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunk(BODY)
    + b"0\r\n\r\n",
    "chunk-size-negative": CHUNKED + b"-1\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk-size-hex-prefixed": CHUNKED + b"0xc\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk-size-signed": CHUNKED + b"+c\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk-size-underscore": CHUNKED + b"0_c\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk-size-over-64-bits": CHUNKED + b"10000000000000000c\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk-data-without-crlf": CHUNKED + b"c\r\n" + BODY + b"XX0\r\n\r\n",
    "obs-fold": JSON_HEAD + b"X-Folded: a\r\n folded: yes\r\nContent-Length: 12\r\n\r\n" + BODY,
    "space-before-colon": JSON_HEAD + b"X-Spaced : yes\r\nContent-Length: 12\r\n\r\n" + BODY,
    "cr-in-header-value": JSON_HEAD + b"X-Evil: a\rb\r\nContent-Length: 12\r\n\r\n" + BODY,
    "lf-in-header-value": JSON_HEAD
    + b"X-Evil: a\nInjected: yes\r\nContent-Length: 12\r\n\r\n"
    + BODY,
    "nul-in-header-value": JSON_HEAD + b"X-Evil: a\x00b\r\nContent-Length: 12\r\n\r\n" + BODY,
    "status-101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n",
    "status-600": b"HTTP/1.1 600 Nope\r\nContent-Length: 12\r\n\r\n" + BODY,
    "status-1000": b"HTTP/1.1 1000 Nope\r\nContent-Length: 12\r\n\r\n" + BODY,
    "status-000": b"HTTP/1.1 000 Nope\r\nContent-Length: 12\r\n\r\n" + BODY,
    "version-2": b"HTTP/2.0 200 OK\r\nContent-Length: 12\r\n\r\n" + BODY,
    "response-head-1mb": JSON_HEAD
    + b"X-Big: "
    + b"a" * (1 << 20)
    + b"\r\nContent-Length: 12\r\n\r\n"
    + BODY,
}


# Odd but valid answers: the strict parser must still take them, whole and exact.
VALID = {
    "chunk-extensions-and-trailers": script(
        send(CHUNKED + b'5;name="v"\r\n{"a":\r\n7\r\n"bcde"}\r\n0\r\nX-Trailer: 1\r\n\r\n')
    ),
    "framed-by-close": script(send(JSON_HEAD + b"Connection: close\r\n\r\n" + BODY), close()),
    "http-1.0": script(
        send(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"),
        send(BODY),
        close(),
    ),
    "one-byte-writes": script(trickle(CHUNKED + chunk(BODY) + b"0\r\n\r\n", 0.001)),
    "interim-103-first": script(
        send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
        send(JSON_HEAD + b"Content-Length: 12\r\n\r\n" + BODY),
    ),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_answer_is_relayed_exactly(hostile: Hostile, case: str) -> None:
    hostile.pod.on(case, VALID[case])
    response = hostile.ask(case)
    assert response.status == 200, (response.status, response.body[:300])
    assert response.interim == []
    assert response.header("content-type") == "application/json"
    assert response.body == BODY


# Valid streams the sidecar relays whole events of: they must arrive exact and complete.
VALID_STREAMS = {
    "events-split-across-chunks": [b'data: {"choi', b'ces":[]}\n', b"\ndata: [DONE]\n\n"],
    "crlf-separated-events": [b'data: {"a":1}\r\n\r\n', b"data: [DONE]\r\n\r\n"],
    "last-event-without-blank-line": [EVENT, b"data: [DONE]"],
    "many-events-in-one-chunk": [EVENT * 50 + b"data: [DONE]\n\n"],
}


@pytest.mark.parametrize("case", sorted(VALID_STREAMS))
def test_valid_stream_is_relayed_exactly(hostile: Hostile, case: str) -> None:
    pieces = VALID_STREAMS[case]
    steps = [send(sse_head())]
    for piece in pieces:
        steps += [send(chunk(piece)), sleep(0.05)]
    hostile.pod.on(case, script(*steps, send(b"0\r\n\r\n")))
    response = hostile.ask(case, stream=True)
    assert response.status == 200, (response.status, response.body[:300])
    assert response.complete
    assert response.body == b"".join(pieces)


def own_answer_follows(env: Hostile, bad: str) -> None:
    """The next request gets its own answer, on another connection than ``bad``'s."""
    [broken] = env.pod.requests(bad)
    response = env.ask("after-" + bad, marker="next-" + bad)
    doc = echo_of(response)
    assert doc["marker"] == "next-" + bad, doc
    assert doc["connection"] != broken.connection, "a broken connection was reused"
    late = env.pod.late(broken.connection)
    assert not late, f"a request was written to the broken connection: {late[0][:200]!r}"


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_answer_is_a_502(hostile: Hostile, case: str) -> None:
    hostile.pod.on(case, script(send(MALFORMED[case]), hold(3)))
    response = hostile.ask(case)
    openai_error(response, 502, "upstream_failed")
    own_answer_follows(hostile, case)


def test_crlf_in_a_header_value_keeps_the_client_connection(hostile: Hostile) -> None:
    """A CR/LF/NUL from the pod is the pod's fault: the client's keep-alive connection
    gets a 502 and carries its next request, it is not dropped."""
    for case in ("cr-in-header-value", "lf-in-header-value", "nul-in-header-value"):
        hostile.pod.on("keep-" + case, script(send(MALFORMED[case]), hold(3)))
    with hostile.client() as client:
        for case in ("cr-in-header-value", "lf-in-header-value", "nul-in-header-value"):
            client.send(hostile.request_bytes("keep-" + case))
            openai_error(client.read_response(HANG), 502, "upstream_failed")
        client.send(hostile.request_bytes("keep-then-fine", marker="still-here"))
        assert echo_of(client.read_response(HANG))["marker"] == "still-here"


# Plain answers cut or stalled before they are complete: short ones are read whole before
# the client sees a byte, so each still becomes a clean error.
CUT_OR_STALLED = {
    "closed-before-final-chunk": (
        script(send(CHUNKED + chunk(BODY)), sleep(0.1), close()),
        502,
        "upstream_failed",
    ),
    "closed-mid-body": (
        script(send(JSON_HEAD + b"Content-Length: 100\r\n\r\n" + BODY), sleep(0.1), close()),
        502,
        "upstream_failed",
    ),
    "reset-mid-body": (
        script(
            send(JSON_HEAD + b"Content-Length: 100\r\n\r\n" + BODY), sleep(0.1), close(reset=True)
        ),
        502,
        "upstream_failed",
    ),
    "never-answers": (script(hold(10)), 504, "upstream_timeout"),
    "head-trickled": (
        script(trickle(JSON_HEAD + b"X-Slow: " + b"s" * 200 + b"\r\n", 0.2)),
        504,
        "upstream_timeout",
    ),
    "stalls-mid-body": (
        script(send(JSON_HEAD + b"Content-Length: 100\r\n\r\n" + BODY), hold(10)),
        504,
        "upstream_timeout",
    ),
    "chunk-size-line-trickled": (
        script(send(CHUNKED), trickle(b"c;ext=" + b"x" * 200, 0.2)),
        504,
        "upstream_timeout",
    ),
    "trailers-trickled": (
        script(send(CHUNKED + chunk(BODY) + b"0\r\n"), trickle(b"X-Trailer: " + b"t" * 200, 0.2)),
        504,
        "upstream_timeout",
    ),
    "endless-trailers": (
        script(
            send(CHUNKED + chunk(BODY) + b"0\r\n"),
            repeat(b"X-Trailer: " + b"t" * 1000 + b"\r\n", seconds=8, limit=64 << 20),
        ),
        502,
        "upstream_failed",
    ),
    "chunk-size-line-growing": (
        script(send(CHUNKED + b"c;"), repeat(b"x" * 65536, seconds=8, limit=64 << 20)),
        502,
        "upstream_failed",
    ),
    "endless-interim-answers": (
        script(repeat(b"HTTP/1.1 100 Continue\r\n\r\n" * 256, seconds=8, limit=64 << 20)),
        502,
        "upstream_failed",
    ),
    "interim-answers-trickled": (
        script(
            *[
                step
                for _ in range(50)
                for step in (send(b"HTTP/1.1 100 Continue\r\n\r\n"), sleep(0.2))
            ]
        ),
        504,
        "upstream_timeout",
    ),
}


@pytest.mark.parametrize("case", sorted(CUT_OR_STALLED))
def test_plain_answer_cut_or_stalled(hostile: Hostile, case: str) -> None:
    behaviour, status, code = CUT_OR_STALLED[case]
    hostile.pod.on(case, behaviour)
    # HANG is well above the 1 s timeouts: a pod trickling for 40 s must not hold us.
    openai_error(hostile.ask(case, timeout=HANG), status, code)
    own_answer_follows(hostile, case)


def stream_ends_with_error(response: Response, code: str) -> None:
    """Status 200, the pod's whole first event relayed, then an error event of its own
    and a clean end (the final chunk), as an SSE client (the OpenAI SDK) reads them."""
    assert response.status == 200, (response.status, response.body[:300])
    assert (response.header("content-type") or "").startswith("text/event-stream")
    assert response.complete, "the stream was not ended cleanly (no final chunk)"
    events = [e for e in response.body.split(b"\n\n") if e]
    # A half-relayed event of the pod's before the error is garbage to an SSE client,
    # and an error glued to it is not an event at all.
    shape = f"not [the pod's event, the error event]: {response.body!r}"
    assert len(events) == 2, shape
    assert events[0] + b"\n\n" == EVENT, shape
    assert events[1].startswith(b'data: {"error":'), shape
    doc = json.loads(events[1][6:])
    assert set(doc) == {"error"}, doc
    assert doc["error"]["code"] == code, doc
    assert doc["error"]["type"] == "server_error", doc
    assert doc["error"]["message"], doc


STARTED = script(send(sse_head() + chunk(EVENT)), sleep(0.1))
BROKEN_STREAMS = {
    "stream-stalls": (script(STARTED, hold(10)), "upstream_timeout"),
    "stream-closed": (script(STARTED, close()), "upstream_failed"),
    "stream-reset": (script(STARTED, close(reset=True)), "upstream_failed"),
    "stream-closed-mid-event": (
        script(STARTED, send(chunk(b'data: {"choi')), sleep(0.1), close()),
        "upstream_failed",
    ),
    "stream-chunk-size-negative": (
        script(STARTED, send(b"-5\r\nhello\r\n"), hold(3)),
        "upstream_failed",
    ),
    "stream-chunk-data-without-crlf": (
        script(STARTED, send(b"5\r\nhelloXX"), hold(3)),
        "upstream_failed",
    ),
    "stream-chunk-size-line-trickled": (
        script(STARTED, trickle(b"10;ext=" + b"x" * 200, 0.2)),
        "upstream_timeout",
    ),
    "stream-trailers-trickled": (
        script(STARTED, send(b"0\r\n"), trickle(b"X-Trailer: " + b"t" * 200, 0.2)),
        "upstream_timeout",
    ),
    "stream-endless-trailers": (
        script(STARTED, send(b"0\r\n"), repeat(b"X-T: " + b"t" * 1000 + b"\r\n", seconds=8)),
        "upstream_failed",
    ),
    "stream-chunk-size-line-growing": (
        script(STARTED, send(b"10;"), repeat(b"x" * 65536, seconds=8, limit=64 << 20)),
        "upstream_failed",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_STREAMS))
def test_stream_broken_after_its_first_event(hostile: Hostile, case: str) -> None:
    behaviour, code = BROKEN_STREAMS[case]
    hostile.pod.on(case, behaviour)
    stream_ends_with_error(hostile.ask(case, stream=True, timeout=HANG), code)
    own_answer_follows(hostile, case)


def test_growing_chunk_size_line_costs_no_memory(own_sidecar: Hostile) -> None:
    """A pod sending 32 MB of chunk-size line without a CRLF: a 502 and no 32 MB held."""
    own_sidecar.ask("warm-up")
    _, before = own_sidecar.memory()
    own_sidecar.pod.on(
        "grow", script(send(CHUNKED + b"c;"), repeat(b"x" * 65536, seconds=8, limit=32 << 20))
    )
    openai_error(own_sidecar.ask("grow", timeout=HANG), 502, "upstream_failed")
    _, after = own_sidecar.memory()
    print(f"peak RSS growth for a 32 MB chunk-size line: {(after - before) / 2**20:.1f} MiB")
    assert after - before < 16 << 20, f"sidecar peak RSS grew by {(after - before) >> 20} MiB"


HUGE = 160 << 20


def test_huge_plain_answer_is_relayed_in_pieces(own_sidecar: Hostile) -> None:
    """A 160 MB non-streaming answer reaches the client whole and exact while the
    sidecar's peak RSS grows by far less than the answer."""
    own_sidecar.ask("warm-up")
    _, before = own_sidecar.memory()
    own_sidecar.pod.on(
        "huge",
        script(send(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % HUGE), body_of(HUGE)),
    )
    crc = 0

    def check(data: bytes) -> None:
        nonlocal crc
        crc = zlib.crc32(data, crc)

    with own_sidecar.client() as client:
        client.send(own_sidecar.request_bytes("huge"))
        response = client.read_response(60, sink=check)
    expected = 0
    block = pattern(1 << 20)
    for _ in range(HUGE >> 20):
        expected = zlib.crc32(block, expected)
    assert response.status == 200
    assert response.complete
    assert response.size == HUGE
    assert crc == expected
    _, after = own_sidecar.memory()
    print(f"peak RSS growth for a {HUGE >> 20} MiB answer: {(after - before) / 2**20:.1f} MiB")
    assert after - before < 48 << 20, f"sidecar peak RSS grew by {(after - before) >> 20} MiB"


def test_long_answer_cut_after_relaying_began_closes_the_client(fresh: Hostile) -> None:
    """Once a long answer's status has left, a cut can only show as a short body and a
    closed connection: never a hang, never a well-framed lie."""
    length = 4 << 20
    fresh.pod.on(
        "cut",
        script(
            send(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % length),
            body_of(2 << 20),
            sleep(0.2),
            close(),
        ),
    )
    with fresh.client() as client:
        client.send(fresh.request_bytes("cut"))
        head = client.read_head(HANG)
        assert head.status == 200
        assert head.header("content-length") == str(length)
        assert client.closed_within(HANG), "the client connection was left open"
        assert len(client.leftover) < length
    with fresh.client() as client:
        client.send(fresh.request_bytes("cut"))
        with pytest.raises(Closed):
            client.read_response(HANG)
    wait_until(lambda: len(fresh.pod.requests("cut")) == 2, within=2, what="both requests")
