"""``Expect: 100-continue`` and the pooled upstream connections: a client that expects
gets exactly one interim ``100`` and then its own answer, the pod never sees ``Expect``,
interim answers from the pod are never relayed, and a pooled connection never hands one
client's answer to another (the cross-client leak of issue 7).
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from zeta_testbed.sidecar import wait_until

from .conftest import HANG, Hostile, echo_of
from .malicious_pod import (
    Behaviour,
    PodConnection,
    Received,
    continue_if_expected,
    echo_answer,
    json_answer,
    script,
    send,
    send_echo,
    sleep,
)
from .raw import Client, Response

POD_STYLES: dict[str, Behaviour] = {
    # uvicorn (vLLM's server): 100 Continue when the app reads the body, if asked to.
    "uvicorn": script(continue_if_expected(), sleep(0.2), send_echo()),
    # aiohttp and most servers given the whole body at once: no interim answer.
    "plain": script(send_echo()),
    # RFC 9110 lets a server send 1xx unasked; a client must skip them.
    "unsolicited-1xx": script(
        send(b"HTTP/1.1 100 Continue\r\n\r\n"),
        send(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"),
        sleep(0.1),
        send_echo(),
    ),
}


def expect_exchange(env: Hostile, client: Client, case: str, marker: str) -> tuple[int, Response]:
    """As curl does: the head with ``Expect``, wait for ``100``, then the body.

    Returns the status of the first head the sidecar sent and the final response.
    """
    request = env.request_bytes(case, marker=marker, headers=[("Expect", "100-continue")])
    head, body = request.split(b"\r\n\r\n", 1)
    client.send(head + b"\r\n\r\n")
    first = client.read_head(HANG).status
    client.send(body)
    return first, client.read_response(HANG)


@pytest.mark.parametrize("style", sorted(POD_STYLES))
def test_expect_gets_one_100_then_its_own_answer(fresh: Hostile, style: str) -> None:
    pod = fresh.pod
    pod.on("expect", POD_STYLES[style])
    pod.on("next", POD_STYLES[style])
    with fresh.client() as client:
        first, response = expect_exchange(fresh, client, "expect", "client-a")
    assert first == 100, "the sidecar did not answer 100 Continue"
    assert response.interim == [], f"more interim answers relayed: {response.interim}"
    assert echo_of(response)["marker"] == "client-a"
    # The sidecar answered the 100 itself: the pod is never asked to.
    [got] = pod.requests("expect")
    assert got.header("expect") is None, got.head
    assert b"expect:" not in pod.raw_bytes().lower()
    # The next client, over the same pooled upstream connection, gets its own answer.
    with fresh.client() as client:
        client.send(fresh.request_bytes("next", marker="client-b"))
        after = client.read_response(HANG)
    assert after.interim == [], f"the pod's interim answers were relayed: {after.interim}"
    assert echo_of(after)["marker"] == "client-b"
    [second] = pod.requests("next")
    assert second.connection == got.connection, "the upstream connection was not pooled"
    assert pod.connections == 1


def test_no_cross_client_leak_while_an_answer_is_pending(fresh: Hostile) -> None:
    """Client B arrives while the pod still works on client A's ``Expect`` request (it
    answered 100 and takes 0.4 s for the rest): each gets its own answer."""
    pod = fresh.pod
    pod.on("slow-a", script(continue_if_expected(), sleep(0.4), send_echo()))
    with concurrent.futures.ThreadPoolExecutor(1) as pool, fresh.client() as a:
        future = pool.submit(expect_exchange, fresh, a, "slow-a", "client-a")
        wait_until(lambda: bool(pod.requests("slow-a")), within=HANG, what="A at the pod")
        time.sleep(0.1)
        with fresh.client() as b:
            b.send(fresh.request_bytes("fast-b", marker="client-b"))
            response_b = b.read_response(HANG)
        assert echo_of(response_b)["marker"] == "client-b", "B got another client's answer"
        first, response_a = future.result(HANG * 2)
    assert first == 100
    assert response_a.interim == []
    assert echo_of(response_a)["marker"] == "client-a"
    # And later requests still get their own answers, over the pooled connections.
    for marker in ("client-c", "client-d"):
        with fresh.client() as c:
            c.send(fresh.request_bytes("later", marker=marker))
            assert echo_of(c.read_response(HANG))["marker"] == marker
    # A's and B's connections at most (B may find A's back in the pool on a slow box).
    assert pod.connections <= 2


STALE = json_answer({"marker": "STALE", "object": "chat.completion"})


async def answer_then_stale(conn: PodConnection, request: Received) -> None:
    await conn.send(echo_answer(request) + STALE)  # one write: both arrive together


NO_CONTENT_WITH_BODY = b"HTTP/1.1 204 No Content\r\nContent-Length: %d\r\n\r\n" % len(STALE)
"""A 204 has no body whatever its Content-Length says: the bytes after it are extra."""

EXTRA = {
    "same-write": answer_then_stale,
    "while-idle": script(send_echo(), sleep(0.1), send(STALE)),
    "after-a-204": script(send(NO_CONTENT_WITH_BODY + STALE)),
}


@pytest.mark.parametrize("when", sorted(EXTRA))
def test_bytes_after_a_complete_answer_retire_the_connection(fresh: Hostile, when: str) -> None:
    """A pod that sends more than its answer (a second, unasked answer): the connection
    is never reused, and the next request gets its own answer, not the stale one."""
    pod = fresh.pod
    pod.on("extra", EXTRA[when])
    first = fresh.ask("extra", marker="client-a")
    if when == "after-a-204":
        assert (first.status, first.body) == (204, b"")
    else:
        assert echo_of(first)["marker"] == "client-a"
    time.sleep(0.3)  # the stale answer is on the connection by now
    with fresh.client() as client:
        client.send(fresh.request_bytes("next", marker="client-b"))
        response = client.read_response(HANG)
    assert echo_of(response)["marker"] == "client-b", "a stale answer reached another client"
    [a] = pod.requests("extra")
    [b] = pod.requests("next")
    assert b.connection != a.connection, "the connection with extra bytes was reused"
