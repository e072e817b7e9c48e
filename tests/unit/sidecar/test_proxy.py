"""The proxy in-process against in-process sims: errors, shares, retries, cancellation."""

import asyncio
import json
from collections import Counter

import aiohttp
import pytest

from zeta_sidecar import bodies
from zeta_sidecar.bodies import rewrite_model
from zeta_sidecar.errors import BadRequest
from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.sim.server import RunningSim

from .conftest import SidecarFactory, SimFactory, chat, free_port, wait_for


def addr(sim: RunningSim) -> str:
    return f"{sim.host}:{sim.port}"


async def error_of(resp: aiohttp.ClientResponse) -> dict[str, object]:
    body = await resp.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert {"message", "type", "code"} <= set(error)
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# --- the body rewrite -----------------------------------------------------------------


def test_rewrite_splices_the_served_name_into_the_original_bytes() -> None:
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "model" : "m7b", "n": 1}'
    out = rewrite_model(raw, "m7b", "org/Real-7B", b'"org/Real-7B"')
    assert (
        out == b'{"messages": [{"role": "user", "content": "hi"}], "model":"org/Real-7B", "n": 1}'
    )
    assert rewrite_model(raw, "m7b", "m7b", b'"m7b"') is raw


def test_rewrite_reserialises_when_splicing_is_ambiguous() -> None:
    # A nested "model" key, and an escaped top-level one: splicing could hit the wrong one.
    for raw in (
        b'{"tools": [{"model": "m"}], "model": "m"}',
        b'{"mod\\u0065l": "m", "x": {"model": "m"}}',
    ):
        out = json.loads(rewrite_model(raw, "m", "served", b'"served"'))
        assert out["model"] == "served"
        assert "served" not in json.dumps({k: v for k, v in out.items() if k != "model"})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"m","messages":[]}',
        b' \n {"model": "m", "messages": []}',
        b'{"model": "m", "priority": 7}',
        b'{"model": "m", "tools": [{"priority": 1}]}',
    ],
)
def test_the_class_rank_goes_out_as_vllm_priority(raw: bytes) -> None:
    # vLLM serves lower priorities first: a class of priority 300 is 700, of 100 is 900.
    out = json.loads(bodies.with_priority(raw, 300))
    assert out == {**json.loads(raw), "priority": 700}


def test_rewrite_keeps_integers_beyond_64_bits_exact() -> None:
    raw = b'{"tools": [{"model": "m", "n": 18446744073709551616}], "model": "m"}'
    out = rewrite_model(raw, "m", "served", b'"served"')
    assert b"18446744073709551616" in out
    assert json.loads(out)["model"] == "served"


# --- parsing the body: orjson when installed, json's answers either way -----------------
# (Integers beyond 64 bits nested deeper than the top level may read as floats: nothing
# reads them there, and a re-serialised body parses again with json, tested above.)

PARSE_CASES = [
    b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9 \xc3\xa9"}]}',
    b'{"model": "m", "temperature": NaN, "top_p": Infinity}',
    b'{"model": "m", "max_tokens": 18446744073709551616, "seed": -9223372036854775809}',
    b'{"model": "m", "a": 0.1, "b": -0.0, "c": 1e308, "d": 1e400, "e": "\\ud800"}',
    b'\xef\xbb\xbf{"model": "m"}',
    '{"model": "m"}'.encode("utf-16"),
    b'{"model": "m", "model": "n"}',
]
BAD_CASES = [b"{not json", b"", b'{"a": 1} x', b'{"a": "\xff"}', b"[1, 2]", b"null", b'"m"']


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
def test_the_body_parses_as_json_parses_it(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:
        monkeypatch.setattr(bodies, "_FAST_LOADS", None)
    else:
        assert bodies._FAST_LOADS is not None, "orjson is a dependency of the project"
    for raw in PARSE_CASES:
        assert repr(bodies.parse_body(raw)) == repr(json.loads(raw)), raw
    for raw in BAD_CASES:
        expected = "Request body must be a JSON object."
        try:
            json.loads(raw)
        except ValueError as exc:
            expected = f"Request body is not valid JSON: {exc}"
        with pytest.raises(BadRequest) as caught:
            bodies.parse_body(raw)
        assert caught.value.message == expected, raw


# --- every error case: status and OpenAI-style body ------------------------------------


async def test_every_error_case_has_its_status_and_body(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim()
    other = await make_sim()
    hang = await make_sim()
    hang.state.set_faults(hang.state.faults.patched({"hang": True}))
    dead = f"127.0.0.1:{free_port()}"
    table = table_json(
        {
            "ok": [endpoint(addr(sim))],
            "full": [endpoint(f"127.0.0.9:{sim.port}", load={"running": 32, "waiting": 20})],
            "nearly": [endpoint(addr(other), load={"running": 30, "waiting": 0})],
            "gone": [endpoint(dead)],
            "slow": [endpoint(addr(hang))],
            "empty": [],
        },
        served={"ok": "sim-7b", "gone": "sim-7b", "slow": "sim-7b", "nearly": "sim-7b"},
        balancing={"timeouts": {"firstByte": "200ms"}},
        traffic={
            "classes": [
                {"name": "standard", "priority": 2, "maxQueueTime": "100ms"},
                {"name": "batch", "priority": 1, "maxQueueTime": "100ms",
                 "queueTimeoutStatus": "429"},
                {"name": "sheddable", "priority": 0, "sheddable": True},
            ]
        },
    )  # fmt: skip
    sidecar = await make_sidecar(table, max_body_bytes=4096)
    url = f"{sidecar.url}/v1/chat/completions"

    async def check(status: int, code: str, **kw: object) -> aiohttp.ClientResponse:
        async with http.post(url, **kw) as resp:  # type: ignore[arg-type]
            assert resp.status == status
            assert (await error_of(resp))["code"] == code
            return resp

    await check(400, "invalid_request", data=b"{not json")
    await check(400, "invalid_request", json=[1, 2])
    await check(404, "model_not_found", json={"messages": []})
    await check(404, "model_not_found", json=chat("nope"))
    await check(413, "request_too_large", data=b"x" * 5000)
    # A saturated model sheds only the sheddable class; the others wait (issue 9), here
    # for at most 100 ms, then get the status their class declares.
    shed = {"x-zeta-priority": "sheddable"}
    resp = await check(429, "no_capacity", json=chat("full"), headers=shed)
    assert resp.headers["Retry-After"] == "1"
    await check(503, "no_healthy_upstream", json=chat("full"))
    await check(429, "no_capacity", json=chat("full"), headers={"x-zeta-priority": "batch"})
    # A batch nearly full (30 of 32, over the 15 % reserve) still takes a request that
    # would wait, but not a sheddable one: the pods' queues are kept for the others.
    await check(429, "no_capacity", json=chat("nearly"), headers=shed)
    async with http.post(url, json=chat("nearly")) as resp:
        assert resp.status == 200
    await check(503, "no_healthy_upstream", json=chat("empty"))
    await check(502, "upstream_failed", json=chat("gone"))
    await check(504, "upstream_timeout", json=chat("slow"))
    hang.state.set_faults(hang.state.faults.patched({"hang": False}))
    async with http.post(url, json=chat("ok")) as resp:
        assert resp.status == 200
        assert (await resp.json())["model"] == "sim-7b"


async def test_engine_priority_sends_each_class_as_vllm_priority(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    # A pod without priority scheduling refuses a non-zero priority, as vLLM does: its
    # 400 proves the gateway sent one; the pod that schedules by priority serves it.
    plain, ranked = await make_sim(), await make_sim(priority_scheduling=True)
    table = table_json(
        {"plain": [endpoint(addr(plain))], "ranked": [endpoint(addr(ranked))]},
        served={"plain": "sim-7b", "ranked": "sim-7b"},
        traffic={"enginePriority": True},
    )
    sidecar = await make_sidecar(table)
    url = f"{sidecar.url}/v1/chat/completions"
    critical = {"x-zeta-priority": "critical"}
    async with http.post(url, json=chat("plain"), headers=critical) as resp:
        assert resp.status == 400
        assert "Priority scheduling is not enabled" in (await error_of(resp))["message"]
    async with http.post(url, json=chat("ranked"), headers=critical) as resp:
        assert resp.status == 200


async def test_with_engine_priority_the_top_class_is_not_held_for_load_it_outranks(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    # The pod preempts lower classes for the highest one, so the gateway sends it on
    # although the model is saturated; a lower class still waits its turn (here, out).
    ranked = await make_sim(priority_scheduling=True)
    busy = {"running": 32, "waiting": 20}
    table = table_json(
        {"m": [endpoint(addr(ranked), load=busy)]},
        served={"m": "sim-7b"},
        traffic={
            "enginePriority": True,
            "classes": [
                {"name": "critical", "priority": 300, "maxQueueTime": "100ms"},
                {"name": "standard", "priority": 200, "maxQueueTime": "100ms"},
            ],
        },
    )
    sidecar = await make_sidecar(table)
    url = f"{sidecar.url}/v1/chat/completions"
    async with http.post(url, json=chat("m"), headers={"x-zeta-priority": "critical"}) as resp:
        assert resp.status == 200
    async with http.post(url, json=chat("m"), headers={"x-zeta-priority": "standard"}) as resp:
        assert resp.status == 503


async def test_no_table_yet_is_503_and_not_ready(
    make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(None)
    async with http.post(f"{sidecar.url}/v1/chat/completions", json=chat("m")) as resp:
        assert resp.status == 503
        assert (await error_of(resp))["code"] == "no_healthy_upstream"
    async with http.get(f"{sidecar.url}/v1/models") as resp:
        assert resp.status == 503
    async with http.get(f"{sidecar.admin_url}/readyz") as resp:
        assert resp.status == 503
    async with http.get(f"{sidecar.admin_url}/healthz") as resp:
        assert resp.status == 200


# --- shares and P2C --------------------------------------------------------------------


async def test_share_per_pod_matches_the_weights(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sims = [await make_sim() for _ in range(3)]
    weights = [1.0, 2.0, 1.0]
    # Capacity in proportion to weight: equal load per capacity under concurrency.
    eps = [
        endpoint(addr(s), weight=w, capacity=int(8 * w)) for s, w in zip(sims, weights, strict=True)
    ]
    sidecar = await make_sidecar(table_json({"sim-7b": eps}))
    # One request at a time: every pod has the same (zero) load at each pick, which is
    # the "equal load" the weights must hold under; with concurrency the shares would
    # also depend on the machine's timing (P2C reacts to in-flight counts, as it should).
    total, workers = 3000, 1

    async def worker() -> None:
        for _ in range(total // workers):
            async with http.post(
                f"{sidecar.url}/v1/completions",
                json={"model": "sim-7b", "prompt": "a", "max_tokens": 1},
            ) as resp:
                assert resp.status == 200
                await resp.read()

    await asyncio.gather(*(worker() for _ in range(workers)))
    counts = [s.state.metrics.requests.total for s in sims]
    assert sum(counts) == total
    assert [c / total for c in counts] == pytest.approx([0.25, 0.5, 0.25], abs=0.03)


async def test_p2c_sends_a_stalled_pod_almost_nothing(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    good, stalled = await make_sim(), await make_sim()
    stalled.state.set_faults(stalled.state.faults.patched({"hang": True}))
    sidecar = await make_sidecar(
        table_json({"sim-7b": [endpoint(addr(good)), endpoint(addr(stalled))]})
    )
    total, workers = 400, 8
    done: Counter[int] = Counter()
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < total:
            issued += 1
            async with http.post(f"{sidecar.url}/v1/chat/completions", json=chat("sim-7b")) as resp:
                done[resp.status] += 1
                await resp.read()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    # Done when every request has an answer or hangs on the stalled pod.
    await wait_for(
        lambda: sum(done.values()) + stalled.state.metrics.requests.hung == total,
        within=15,
        what="traffic",
    )
    stalled_count = stalled.state.metrics.requests.total
    stalled.state.set_faults(stalled.state.faults.patched({"hang": False}))
    await asyncio.gather(*tasks)
    # It takes requests only while it holds fewer than the good pod: at most a handful.
    assert stalled_count <= workers // 2 + 1
    assert done == {200: total}


# --- retries, ejection, probing back ----------------------------------------------------


async def test_failures_are_retried_ejected_and_probed_back(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    good = await make_sim()
    port = free_port()
    table = table_json(
        {"sim-7b": [endpoint(addr(good)), endpoint(f"127.0.0.1:{port}")]},
        balancing={"outlier": {"consecutiveFailures": 2, "baseEjection": "300ms"}},
    )
    sidecar = await make_sidecar(table)
    gw = sidecar.gateway
    dead = next(p for p in gw.store.pods() if p.address.endswith(f":{port}"))
    for _ in range(40):
        async with http.post(f"{sidecar.url}/v1/chat/completions", json=chat("sim-7b")) as resp:
            assert resp.status == 200
    assert not dead.health.serving  # ejected after two connect errors
    metrics = gw.metrics.registry
    assert metrics.get_sample_value("zeta_retries_total", {"model": "sim-7b"}) == 2
    assert (
        metrics.get_sample_value("zeta_ejections_total", {"model": "sim-7b", "pod": dead.name}) == 1
    )
    # The pod comes back; the prober readmits it after the (growing) ejection time.
    revived = await make_sim(port=port)
    await wait_for(lambda: dead.health.serving, within=5, what="probe back")
    for _ in range(40):
        async with http.post(f"{sidecar.url}/v1/chat/completions", json=chat("sim-7b")) as resp:
            assert resp.status == 200
    assert revived.state.metrics.requests.total > 5


async def test_503_is_retried_on_another_pod(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    good, closing = await make_sim(), await make_sim()
    closing.state.closing = True  # a sim shutting down answers 503
    sidecar = await make_sidecar(
        table_json({"sim-7b": [endpoint(addr(good)), endpoint(addr(closing))]})
    )
    for _ in range(20):
        async with http.post(f"{sidecar.url}/v1/chat/completions", json=chat("sim-7b")) as resp:
            assert resp.status == 200
    assert closing.state.metrics.requests.total == 0 or good.state.metrics.requests.total == 20


# --- streams: cut mid-way, client gone ---------------------------------------------------


async def test_a_stream_gone_silent_ends_with_an_error_event(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim()
    sidecar = await make_sidecar(
        table_json({"sim-7b": [endpoint(addr(sim))]}, balancing={"timeouts": {"idle": "200ms"}})
    )
    async with http.post(
        f"{sidecar.url}/v1/chat/completions", json=chat("sim-7b", max_tokens=5000, stream=True)
    ) as resp:
        assert resp.status == 200
        first = await resp.content.readline()
        assert first.startswith(b"data: ")
        sim.state.set_faults(sim.state.faults.patched({"slowdown": 1e6}))
        rest = await resp.read()
    last = rest.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ")
    assert json.loads(last[6:])["error"]["code"] == "upstream_timeout"


async def test_client_disconnect_cancels_the_upstream_request(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(time_scale=50.0)
    sidecar = await make_sidecar(table_json({"sim-7b": [endpoint(addr(sim))]}))
    url = f"{sidecar.url}/v1/chat/completions"
    resp = await http.post(url, json=chat("sim-7b", max_tokens=5000, stream=True))
    assert (await resp.content.readline()).startswith(b"data: ")
    resp.close()  # the client goes away mid-stream
    await wait_for(lambda: sim.state.metrics.requests.cancelled == 1, what="stream cancelled")
    # Without streaming the answer comes only at the end: the client leaves while waiting.
    waiting = asyncio.create_task(http.post(url, json=chat("sim-7b", max_tokens=5000)))
    await wait_for(lambda: sim.state.engine.stats().running == 1, what="generation")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await wait_for(lambda: sim.state.metrics.requests.cancelled == 2, what="cancelled upstream")
    await wait_for(
        lambda: all(p.inflight == 0 for p in sidecar.gateway.store.pods()), what="in-flight 0"
    )


# --- routes: the traffic port answers what the aiohttp router did ---------------------


async def raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection (``Connection: close``); the whole answer."""
    line, rest = request.split(b"\r\n", 1)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(line + b"\r\nConnection: close\r\n" + rest)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_unknown_routes_and_methods_get_openai_style_404_and_405(
    make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sidecar = await make_sidecar(table_json({"m": [endpoint("127.0.0.1:9")]}))
    for method, path, status, allow in (
        ("GET", "/nope", 404, None),
        ("GET", "/v1/models/", 404, None),
        ("POST", "/v1/chat%2Fcompletions", 404, None),
        ("GET", "/v1/chat/completions", 405, "POST"),
        ("PUT", "/v1/embeddings", 405, "POST"),
        ("POST", "/v1/models", 405, "GET,HEAD"),
    ):
        async with http.request(method, f"{sidecar.url}{path}") as resp:
            assert (resp.status, resp.headers.get("Allow")) == (status, allow), (method, path)
            error = (await resp.json())["error"]
            assert error["type"] == "invalid_request_error"
            assert path.split("?")[0] in error["message"]
    for method in ("GET", "HEAD"):
        async with http.request(method, f"{sidecar.url}/v1/m%6Fdels?x=1") as resp:
            assert resp.status == 200
    # Expect: 100-continue is answered before the body is read; an unknown one is a 417.
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    answer = await raw_exchange(sidecar.url, head + b"Expect: 100-continue\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 ")
    assert b'"model_not_found"' in answer
    answer = await raw_exchange(sidecar.url, head + b"Expect: bogus\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 417 ")


# --- admin --------------------------------------------------------------------------------


async def test_admin_endpoints(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim()
    sidecar = await make_sidecar(table_json({"sim-7b": [endpoint(addr(sim))]}, revision=7))
    async with http.post(
        f"{sidecar.url}/v1/embeddings", json={"model": "sim-7b", "input": "x"}
    ) as resp:
        assert resp.status == 404  # the sim serves no embeddings: its own answer passes through
    async with http.get(f"{sidecar.admin_url}/table") as resp:
        body = await resp.json()
        assert (body["revision"], body["table"]["revision"]) == (7, 7)
    async with http.get(f"{sidecar.admin_url}/readyz") as resp:
        assert resp.status == 200
    async with http.get(f"{sidecar.admin_url}/metrics") as resp:
        text = await resp.text()
    for name in (
        "zeta_requests_total",
        "zeta_table_revision 7.0",
        "zeta_inflight_requests",
        "zeta_table_reloads_total",
    ):
        assert name in text


async def test_the_upstream_address_comes_only_from_the_table(
    make_sim: SimFactory, make_sidecar: SidecarFactory
) -> None:
    sim = await make_sim()
    decoy = await make_sim()
    sidecar = await make_sidecar(table_json({"sim-7b": [endpoint(addr(sim))]}))
    body = json.dumps(chat("sim-7b")).encode()
    port = sidecar.url.rsplit(":", 1)[1]
    # An absolute URI, a Host and X-Forwarded-* all naming the decoy: none is followed.
    request = (
        f"POST http://{addr(decoy)}/v1/chat/completions HTTP/1.1\r\n"
        f"Host: {addr(decoy)}\r\nX-Forwarded-Host: {addr(decoy)}\r\n"
        f"X-Forwarded-For: {decoy.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    writer.write(request)
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200")
    assert sim.state.metrics.requests.total == 1
    assert decoy.state.metrics.requests.total == 0


async def test_x_zeta_debug_explains_where_a_complexity_request_went(
    make_sim: SimFactory, make_sidecar: SidecarFactory, http: aiohttp.ClientSession
) -> None:
    small, big = await make_sim(), await make_sim()
    table = table_json(
        {"small": [endpoint(addr(small))], "big": [endpoint(addr(big))]},
        served={"small": "sim-7b", "big": "sim-7b"},
        virtual={"auto": {"strategy": "complexity", "candidates": ["small", "big"]}},
    )
    sidecar = await make_sidecar(table)
    url = f"{sidecar.url}/v1/chat/completions"
    for stream in (False, True):
        debug = {"x-zeta-debug": "1"}
        async with http.post(url, json=chat("auto", stream=stream), headers=debug) as resp:
            assert resp.status == 200
            why = resp.headers["x-zeta-complexity"]
            await resp.read()
        assert why.startswith("score=")
        assert "tier=1/2" in why
    async with http.post(url, json=chat("auto")) as resp:
        assert "x-zeta-complexity" not in resp.headers  # only when asked for


def test_only_whole_sse_events_are_relayed() -> None:
    # Issue 7: a pod cut mid-event left half an event glued to the error event after it.
    from zeta_sidecar.relay import whole_events

    assert whole_events(b"", b"data: a\n\ndata: b") == (b"data: a\n\n", b"data: b")
    assert whole_events(b"data: b", b"c\n\n") == (b"data: bc\n\n", b"")
    assert whole_events(b"", b"data: a\r\n\r\nda") == (b"data: a\r\n\r\n", b"da")
    assert whole_events(b"", b"no end yet") == (b"", b"no end yet")
    huge = b"x" * ((1 << 20) + 1)
    assert whole_events(b"", huge) == (huge, b"")  # past the bound: passed on as it comes
