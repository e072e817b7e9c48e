"""The naive baseline this project started from, as a small router: every request goes
to the pod with the smallest ``queue length + mean response time``, read from the pods'
metrics every ``--refresh`` seconds. Not part of the product: it exists to show how a
deterministic choice over a shared, periodically refreshed signal herds.

``auto`` (any model name not served by a pod) may go to any pod, its ``model``
rewritten to that pod's: load only, no notion of difficulty.

Usage: ``python bench/routing/argmin.py --port P --refresh 2 --pod MODEL=URL ...``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from dataclasses import dataclass

import aiohttp
from aiohttp import web

_SAMPLE = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+|NaN)$", re.MULTILINE)


@dataclass
class Pod:
    model: str
    url: str
    waiting: float = 0.0
    response: float = 0.0
    e2e_sum: float = 0.0
    e2e_count: float = 0.0

    @property
    def score(self) -> float:
        return self.waiting + self.response


async def refresh(pods: list[Pod], every: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            for pod in pods:
                try:
                    async with session.get(f"{pod.url}/metrics") as resp:
                        text = await resp.text()
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pod.waiting = float("inf")  # unreachable: never the argmin
                    continue
                values: dict[str, float] = {}
                for name, value in _SAMPLE.findall(text):
                    values[name] = values.get(name, 0.0) + float(value)
                pod.waiting = values.get("vllm:num_requests_waiting", 0.0)
                total = values.get("vllm:e2e_request_latency_seconds_sum", 0.0)
                count = values.get("vllm:e2e_request_latency_seconds_count", 0.0)
                if count > pod.e2e_count:
                    pod.response = (total - pod.e2e_sum) / (count - pod.e2e_count)
                pod.e2e_sum, pod.e2e_count = total, count
            await asyncio.sleep(every)


def build(pods: list[Pod]) -> web.Application:
    served = {p.model for p in pods}
    session: aiohttp.ClientSession | None = None

    async def startup(app: web.Application) -> None:
        nonlocal session
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        app["refresher"] = asyncio.create_task(refresh(pods, app["every"]))

    async def cleanup(app: web.Application) -> None:
        app["refresher"].cancel()
        if session is not None:
            await session.close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        assert session is not None
        body = await request.json()
        model = body.get("model")
        candidates = [p for p in pods if p.model == model] if model in served else pods
        pod = min(candidates, key=lambda p: p.score)
        body["model"] = pod.model
        try:
            async with session.post(f"{pod.url}{request.path}", json=body) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={"Content-Type": upstream.headers.get("Content-Type", "")},
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=502)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def table(request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(
                [{"url": p.url, "waiting": p.waiting, "response": p.response} for p in pods]
            ),
            content_type="application/json",
        )

    app = web.Application()
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/chat/completions", proxy)
    app.router.add_post("/v1/completions", proxy)
    app.router.add_get("/health", health)
    app.router.add_get("/scores", table)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--refresh", type=float, default=2.0)
    parser.add_argument("--pod", action="append", default=[], help="MODEL=URL")
    args = parser.parse_args()
    pods = [Pod(*item.split("=", 1)) for item in args.pod]
    app = build(pods)
    app["every"] = args.refresh
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
