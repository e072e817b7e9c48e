"""The pluggable classifier against a fake classification service on loopback."""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from tests.unit.sidecar.conftest import free_port
from zeta_sidecar.classifier import MAX_TEXT, Classifier, read_answer, request_text
from zeta_sidecar.metrics import Metrics
from zeta_sidecar.routing import Router
from zeta_sidecar.table_store import Snapshot, TableStore, VirtualModel
from zeta_sidecar.testing import endpoint, table_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EASY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def snapshot(url: str, timeout: str = "200ms", thresholds: list[float] | None = None) -> Snapshot:
    models = {
        name: [endpoint(f"127.0.0.{i + 1}:8000")] for i, name in enumerate(("4b", "7b", "14b"))
    }
    auto: dict[str, object] = {
        "strategy": "complexity",
        "candidates": ["14b", "4b", "7b"],
        "classifier": {"url": url, "timeout": timeout},
    }
    if thresholds is not None:
        auto["thresholds"] = thresholds
    text = table_json(models, served={"14b": "qwen-14b"}, virtual={"auto": auto})
    snap, _ = TableStore(max_bytes=1 << 20).load(text.encode(), 0.0)
    return snap


class FakeClassifier:
    """A classification service whose answer each test sets; it records what it was sent."""

    def __init__(self) -> None:
        self.handler: Handler = self.answer_tier_3
        self.received: list[dict[str, object]] = []
        self.finished = asyncio.Event()

    async def answer_tier_3(self, request: web.Request) -> web.StreamResponse:
        self.received.append(await request.json())
        return web.json_response({"tier": 3})

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        return await self.handler(request)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeClassifier, str]]:
    service = FakeClassifier()
    app = web.Application()
    app.router.add_post("/classify", service.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield service, f"http://127.0.0.1:{port}/classify"
    await runner.cleanup()


@pytest.fixture
async def classifier() -> AsyncIterator[tuple[Classifier, Metrics]]:
    metrics = Metrics(list)
    client = Classifier(metrics.classifier_fallback)
    yield client, metrics
    await client.close()


def fallbacks(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "zeta_classifier_fallbacks_total", {"model": "auto", "reason": reason}
    )
    return value or 0.0


async def test_the_classifiers_tier_is_used(
    fake: tuple[FakeClassifier, str], classifier: tuple[Classifier, Metrics]
) -> None:
    service, url = fake
    client, metrics = classifier
    snap = snapshot(url)
    virtual = snap.virtual["auto"]
    tier = await client.tier(virtual, EASY)
    assert tier == 2
    router = Router(rand=random.Random(0).random, headroom=0.25)
    # The built-in estimate alone sends "hi" to the smallest model; the classifier wins.
    assert router._complexity(virtual, EASY)[0].name == "4b"
    assert router._complexity(virtual, EASY, tier)[0].name == "14b"
    assert service.received == [{"text": "hi", "model": "auto", "candidates": ["4b", "7b", "14b"]}]
    assert fallbacks(metrics, "timeout") + fallbacks(metrics, "error") == 0


@pytest.mark.parametrize(
    ("answer", "index"),
    [
        ({"tier": 1}, 0),
        ({"recommended_model": "7b", "classification": {"category": "math"}}, 1),
        ({"recommended_model": "qwen-14b"}, 2),
        ({"score": 0.5}, 1),
        ({"score": 0.95}, 2),
    ],
)
async def test_every_answer_shape_names_a_candidate(
    fake: tuple[FakeClassifier, str],
    classifier: tuple[Classifier, Metrics],
    answer: dict[str, object],
    index: int,
) -> None:
    service, url = fake

    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(answer)

    service.handler = reply
    client, metrics = classifier
    assert await client.tier(snapshot(url, thresholds=[0.3, 0.9]).virtual["auto"], EASY) == index
    assert fallbacks(metrics, "answer") == 0


async def test_a_slow_classifier_falls_back_within_its_timeout(
    fake: tuple[FakeClassifier, str], classifier: tuple[Classifier, Metrics]
) -> None:
    service, url = fake

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        service.finished.set()
        return web.json_response({"tier": 3})

    service.handler = slow
    client, metrics = classifier
    assert await client.tier(snapshot(url, timeout="50ms").virtual["auto"], EASY) is None
    # The call returned while the server was still thinking: the timeout cut it short.
    assert not service.finished.is_set()
    assert fallbacks(metrics, "timeout") == 1


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, '{"tier": 3}', "error"),
        (200, "not json", "answer"),
        (200, '{"tier": 4}', "answer"),
        (200, '{"tier": true}', "answer"),
        (200, '{"recommended_model": "70b"}', "answer"),
        (200, '{"score": 1.5}', "answer"),
        (200, "[3]", "answer"),
    ],
)
async def test_a_failing_classifier_falls_back_and_is_counted(
    fake: tuple[FakeClassifier, str],
    classifier: tuple[Classifier, Metrics],
    status: int,
    body: str,
    reason: str,
) -> None:
    service, url = fake

    async def failing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type="application/json")

    service.handler = failing
    client, metrics = classifier
    assert await client.tier(snapshot(url).virtual["auto"], EASY) is None
    assert fallbacks(metrics, reason) == 1


async def test_an_unreachable_classifier_falls_back(classifier: tuple[Classifier, Metrics]) -> None:
    client, metrics = classifier
    url = f"http://127.0.0.1:{free_port()}/classify"
    assert await client.tier(snapshot(url).virtual["auto"], EASY) is None
    assert fallbacks(metrics, "error") == 1


async def test_no_classifier_means_no_call(classifier: tuple[Classifier, Metrics]) -> None:
    client, metrics = classifier
    snap = snapshot("http://127.0.0.1:1/classify")
    plain = VirtualModel("plain", *_fields(snap.virtual["auto"]))
    assert await client.tier(plain, EASY) is None
    assert fallbacks(metrics, "error") == 0


def _fields(v: VirtualModel) -> tuple[object, ...]:
    return (v.strategy, v.spillover, v.candidates, v.cum, v.thresholds, None)


def test_the_text_sent_is_the_last_message_bounded() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, "b"]}]}
    assert request_text(parts) == "a b"
    assert request_text({"prompt": "complete me"}) == "complete me"
    assert len(request_text({"messages": [{"content": "x" * (MAX_TEXT + 5)}]})) == MAX_TEXT
    assert request_text({"messages": []}) == ""


def test_read_answer_prefers_tier_over_the_other_fields() -> None:
    snap = snapshot("http://127.0.0.1:1/classify")
    assert read_answer({"tier": 1, "recommended_model": "14b"}, snap.virtual["auto"]) == 0
