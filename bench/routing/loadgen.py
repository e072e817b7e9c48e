"""Open-loop replay of a trace against one system, and sampling of the pods meanwhile.

Every request of the trace is sent at its offset whatever happened to the earlier
ones (open loop: a slow system cannot slow its own load down) and ends as exactly one
record: a status (the HTTP code, or 0 for a connection error or a timeout), its time
to first token (streams), end-to-end time, tokens and the model that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from routing.trace import TraceRequest


@dataclass(slots=True)
class Record:
    system: str
    scenario: str
    seed: int
    index: int
    klass: str
    stream: bool
    at: float
    """Scheduled offset (wall seconds from the start)."""
    late: float
    """How much later than scheduled it was sent: the load generator's own lag."""
    replica: int
    status: int
    error: str
    ttft: float | None
    """Wall seconds to the first content token (streams only)."""
    e2e: float | None
    tokens: int
    max_tokens: int
    served_model: str
    priority: str = ""
    tenant: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _first_content(buffer: bytes) -> bool:
    """Whether an SSE buffer holds an event with generated text (not the role opening)."""
    for event in buffer.split(b"\n\n"):
        if not event.startswith(b"data:") or event.startswith(b"data: [DONE]"):
            continue
        try:
            obj = json.loads(event[5:])
        except ValueError:
            continue
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content") or choice.get("text"):
                return True
    return False


def _error(status: int, body: bytes) -> str:
    """``http <status>``, and the OpenAI error code when the body has one (a 429 says
    whether the model had no room for a sheddable request or the tenant was limited)."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    return f"http {status} {code}" if isinstance(code, str) else f"http {status}"


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    request: TraceRequest,
    limit: float,
) -> tuple[int, str, float | None, float | None, int, str]:
    body = json.dumps(request.body()).encode()
    start = time.perf_counter()
    ttft: float | None = None
    try:
        async with asyncio.timeout(limit):
            async with session.post(url, data=body, headers=request.headers()) as resp:
                if resp.status != 200:
                    return resp.status, _error(resp.status, await resp.read()), None, None, 0, ""
                if not request.stream:
                    payload = await resp.json(content_type=None)
                    e2e = time.perf_counter() - start
                    usage = payload.get("usage") or {}
                    return (
                        200, "", None, e2e, int(usage.get("completion_tokens", 0)),
                        str(payload.get("model", "")),
                    )  # fmt: skip
                pending = b""
                seen = b""
                async for chunk in resp.content.iter_any():
                    if ttft is None:
                        pending += chunk
                        if _first_content(pending):
                            ttft = time.perf_counter() - start
                            seen = pending[:2000]
                        pending = pending[-4096:]
                    else:
                        pending = (pending + chunk)[-4096:]
                e2e = time.perf_counter() - start
                if b"[DONE]" not in pending or b'"error"' in pending:
                    return 200, "stream ended without [DONE]", ttft, e2e, 0, ""
                model = ""
                marker = seen.find(b'"model":"')
                if marker >= 0:
                    model = seen[marker + 9 : seen.find(b'"', marker + 9)].decode()
                else:
                    marker = seen.find(b'"model": "')
                    if marker >= 0:
                        model = seen[marker + 10 : seen.find(b'"', marker + 10)].decode()
                return 200, "", ttft, e2e, request.max_tokens, model
    except TimeoutError:
        return 0, "timeout", ttft, None, 0, ""
    except (aiohttp.ClientError, OSError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"[:200], ttft, None, 0, ""


async def replay(
    trace: Sequence[TraceRequest],
    urls: Sequence[str],
    *,
    system: str,
    scenario: str,
    seed: int,
    limit: float,
    events: Sequence[tuple[float, Callable[[], Any]]] = (),
    on_start: Callable[[float], None] | None = None,
) -> list[Record]:
    """Send every request at its offset to ``urls[i % len(urls)]`` (clients spread over
    gateway replicas), fire ``events`` at their offsets; all records once all ended."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        start = time.perf_counter()
        if on_start is not None:
            on_start(time.time())

        async def run(request: TraceRequest) -> None:
            delay = start + request.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late = time.perf_counter() - start - request.at
            replica = request.index % len(urls)
            status, error, ttft, e2e, tokens, model = await _one(
                session, urls[replica] + "/v1/chat/completions", request, limit
            )
            records.append(
                Record(
                    system, scenario, seed, request.index, request.klass, request.stream,
                    round(request.at, 4), round(late, 4), replica, status, error,
                    ttft, e2e, tokens, request.max_tokens, model, request.priority,
                    request.tenant,
                )
            )  # fmt: skip

        async def fire(at: float, action: Callable[[], Any]) -> None:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            # Events talk to pods and the apiserver with blocking clients: off the loop.
            await loop.run_in_executor(None, action)

        tasks = [asyncio.create_task(run(r)) for r in trace]
        tasks += [asyncio.create_task(fire(at, action)) for at, action in events]
        await asyncio.gather(*tasks)
    records.sort(key=lambda r: r.index)
    return records


@dataclass(slots=True)
class Sample:
    t: float
    pod: str
    running: float
    waiting: float
    requests_total: float


async def sample_pods(
    pods: Callable[[], Sequence[tuple[str, str]]],
    stop: asyncio.Event,
    *,
    every: float = 0.5,
) -> list[Sample]:
    """Each pod's /admin/stats every ``every`` seconds until ``stop``: running, waiting
    and requests received (the sim does not name itself in responses, so traffic per
    pod comes from these counters)."""
    samples: list[Sample] = []
    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not stop.is_set():
            t = time.perf_counter() - start
            for name, url in pods():
                try:
                    async with session.get(f"{url}/admin/stats") as resp:
                        stats = await resp.json()
                    samples.append(
                        Sample(round(t, 3), name, stats["running"], stats["waiting"],
                               stats["requests_total"])
                    )  # fmt: skip
                except (aiohttp.ClientError, OSError, TimeoutError, KeyError):
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    return samples


async def sample_table(
    admin_url: str, stop: asyncio.Event, *, every: float = 1.0
) -> list[dict[str, Any]]:
    """The sidecar's table (per-pod weight and reported load) every ``every`` seconds."""
    out: list[dict[str, Any]] = []
    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not stop.is_set():
            t = time.perf_counter() - start
            try:
                async with session.get(f"{admin_url}/table") as resp:
                    answer = await resp.json()
                table = answer.get("table") or {}
                for model, entry in table.get("models", {}).items():
                    for ep in entry.get("endpoints", []):
                        load = ep.get("load") or {}
                        out.append(
                            {"t": round(t, 3), "model": model, "pod": ep["pod"],
                             "weight": ep["weight"], "revision": answer.get("revision"),
                             "running": load.get("running"), "waiting": load.get("waiting")}
                        )  # fmt: skip
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    return out
