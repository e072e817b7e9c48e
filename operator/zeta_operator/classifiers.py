"""Whether the external tier classifiers of a router's virtual models answer.

The sidecar asks a virtual model's classifier for every request and, when it times out
or fails, lets the built-in estimator decide (counted in its metrics). That is the right
thing per request, but a classifier that is down for good would go unseen by anyone not
reading the gateways' metrics: so once per interval the operator asks each classifier
one question of its own, as a sidecar would (same body shape, same timeout), and says
what it saw in the ``ClassifierAvailable`` condition.
"""

import asyncio
from collections.abc import Sequence

import aiohttp

from zeta_api import ClassifierSpec, ConditionStatus, VirtualModelSpec
from zeta_operator.reporting import Verdict

__all__ = ["CONDITION_CLASSIFIER_AVAILABLE", "PROBE_TEXT", "classifier_verdict", "probe"]

CONDITION_CLASSIFIER_AVAILABLE = "ClassifierAvailable"

PROBE_TEXT = "Say hello."
"""What the probe asks: any short request will do; only an answer of the right shape
counts (a tier, a recommended model or a score)."""


async def probe(virtual: VirtualModelSpec, spec: ClassifierSpec) -> str | None:
    """``None`` if the virtual model's classifier answers in time and in shape, else why
    not (one line)."""
    body: dict[str, object] = {
        "text": PROBE_TEXT,
        "model": virtual.name,
        "candidates": list(virtual.candidates),
    }
    try:
        status, answer = await _ask(spec, body)
    except TimeoutError:
        return f"{virtual.name}: no answer from {spec.url} within {spec.timeout:g}s"
    except (aiohttp.ClientError, OSError) as exc:
        return f"{virtual.name}: {spec.url} unreachable: {exc}"
    except ValueError:
        return f"{virtual.name}: the answer of {spec.url} is not JSON"
    if status != 200:
        return f"{virtual.name}: HTTP {status} from {spec.url}"
    if not isinstance(answer, dict) or not {"tier", "recommended_model", "score"} & set(answer):
        return f"{virtual.name}: the answer of {spec.url} names no tier, model or score"
    return None


async def _ask(spec: ClassifierSpec, body: dict[str, object]) -> tuple[int, object]:
    async with (
        asyncio.timeout(spec.timeout),
        aiohttp.ClientSession() as session,
        session.post(spec.url, json=body) as resp,
    ):
        return resp.status, await resp.json(content_type=None) if resp.status == 200 else None


async def classifier_verdict(virtuals: Sequence[VirtualModelSpec]) -> Verdict | None:
    """The condition for a router's classifiers; ``None`` if it declares none."""
    with_classifier = [v for v in virtuals if v.classifier is not None]
    if not with_classifier:
        return None
    probes = (probe(v, v.classifier) for v in with_classifier if v.classifier is not None)
    problems = [p for p in await asyncio.gather(*probes) if p]
    if problems:
        return Verdict(
            CONDITION_CLASSIFIER_AVAILABLE,
            ConditionStatus.FALSE,
            "ClassifierFailing",
            "; ".join(problems) + " (the sidecars' built-in estimator decides meanwhile)",
        )
    names = ", ".join(v.name for v in with_classifier)
    return Verdict(
        CONDITION_CLASSIFIER_AVAILABLE, ConditionStatus.TRUE, "Answering", f"answering: {names}"
    )
