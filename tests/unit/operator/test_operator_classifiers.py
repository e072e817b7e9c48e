"""The ClassifierAvailable condition: the operator's own question to each classifier
(issue 14: a failing classifier must be visible, not only counted by the gateways)."""

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from zeta_api import ClassifierSpec, ConditionStatus, Strategy, VirtualModelSpec
from zeta_operator.classifiers import CONDITION_CLASSIFIER_AVAILABLE, classifier_verdict


@pytest.fixture
async def classifier() -> AsyncIterator[Callable[[web.Response | None, float], str]]:
    runners: list[web.AppRunner] = []

    async def start(answer: web.Response | None, delay: float) -> str:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            assert set(body) == {"text", "model", "candidates"}
            await asyncio.sleep(delay)
            return answer if answer is not None else web.json_response({"tier": 2})

        app = web.Application()
        app.router.add_post("/classify", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/classify"

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


def auto(url: str, timeout: float = 0.5) -> VirtualModelSpec:
    return VirtualModelSpec(
        name="auto",
        strategy=Strategy.COMPLEXITY,
        candidates=("small", "big"),
        classifier=ClassifierSpec(url=url, timeout=timeout),
    )


async def test_no_classifier_no_condition() -> None:
    plain = VirtualModelSpec(name="auto", strategy=Strategy.COMPLEXITY, candidates=("a", "b"))
    assert await classifier_verdict([plain]) is None


async def test_an_answering_classifier_is_available(classifier) -> None:  # type: ignore[no-untyped-def]
    url = await classifier(None, 0.0)
    verdict = await classifier_verdict([auto(url)])
    assert verdict is not None
    assert (verdict.type, verdict.status) == (CONDITION_CLASSIFIER_AVAILABLE, ConditionStatus.TRUE)


@pytest.mark.parametrize(
    ("answer", "delay", "within", "words"),
    [
        (None, 0.3, 0.05, "no answer"),
        (web.Response(status=500), 0.0, 0.5, "HTTP 500"),
        (web.Response(text="not json"), 0.0, 0.5, "not JSON"),
        (web.json_response({"label": "hard"}), 0.0, 0.5, "names no tier"),
    ],
)
async def test_a_failing_classifier_is_a_false_condition_saying_why(  # type: ignore[no-untyped-def]
    classifier, answer: web.Response | None, delay: float, within: float, words: str
) -> None:
    url = await classifier(answer, delay)
    verdict = await classifier_verdict([auto(url, within)])
    assert verdict is not None
    assert verdict.status is ConditionStatus.FALSE
    assert verdict.reason == "ClassifierFailing"
    assert words in verdict.message
    assert "built-in estimator" in verdict.message


async def test_an_unreachable_classifier_is_named() -> None:
    verdict = await classifier_verdict([auto("http://127.0.0.1:9/classify")])
    assert verdict is not None
    assert verdict.status is ConditionStatus.FALSE
    assert "unreachable" in verdict.message
