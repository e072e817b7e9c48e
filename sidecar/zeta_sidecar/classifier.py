"""Ask an external classification service which tier a request needs, within a strict timeout.

A ``complexity`` virtual model may declare ``classifier: {url, timeout}``. For each of its
requests the sidecar POSTs the text to classify to ``url`` and routes by the answer; when
the service does not answer within ``timeout``, answers with an error, or answers what
cannot be read, the built-in estimator (:mod:`~zeta_sidecar.complexity`) decides instead,
and ``zeta_classifier_fallbacks_total{model, reason}`` counts it (reason: ``timeout``,
``error`` or ``answer``). A slow classifier therefore costs at most its timeout, never a
request.

The request, modelled on vLLM Semantic Router's ``POST /api/v1/classify/intent`` (whose
body is ``{"text": ...}``), with what a tier router needs added::

    POST <url>
    Content-Type: application/json

    {
      "text": "<the last message, at most 8,000 characters>",
      "model": "<the virtual model's name>",
      "candidates": ["<model of the lowest tier>", ..., "<model of the highest tier>"]
    }

The answer (HTTP 200, JSON object); the first of these fields present decides:

- ``"tier": k``, an integer, 1 for the first candidate up to ``len(candidates)``;
- ``"recommended_model": "<name>"``, one of the candidates (vLLM Semantic Router's
  answer carries this field; other fields, such as ``classification``, are ignored);
- ``"score": s``, a number in [0, 1], how hard the request is (as a RouteLLM router's
  strong-model win rate), mapped onto the candidates by the virtual model's thresholds.

Anything else (another status, not JSON, a tier out of range, a model that is not a
candidate) is an ``answer`` fallback. Requests go through a small client session of the
classifier's own (keep-alive, bounded connections): the prober's session has timeouts of
its own, and a classifier must not compete with health checks for connections.
"""

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp

from zeta_sidecar.complexity import tier_index
from zeta_sidecar.table_store import VirtualModel

__all__ = ["MAX_TEXT", "Classifier", "FallbackReason", "request_text"]

#: Characters of the last message sent: bounds the classifier's work and the upload.
MAX_TEXT: Final = 8000
_CONNECTIONS: Final = 64

FallbackReason = str
"""``timeout``, ``error`` or ``answer``."""


def request_text(body: Mapping[str, object]) -> str:
    """The text a classifier is asked about: the last message (or the prompt), bounded."""
    messages = body.get("messages")
    content: object = ""
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
    elif "prompt" in body:
        content = body.get("prompt")
    if isinstance(content, list):
        content = " ".join(
            part if isinstance(part, str) else part.get("text", "")
            for part in content
            if isinstance(part, str)
            or (isinstance(part, dict) and isinstance(part.get("text"), str))
        )
    return content[:MAX_TEXT] if isinstance(content, str) else ""


def read_answer(answer: object, virtual: VirtualModel) -> int | None:
    """The candidate index an answer names, or ``None`` if it names none."""
    if not isinstance(answer, dict):
        return None
    count = len(virtual.candidates)
    index: int | None = None
    if "tier" in answer:
        tier = answer["tier"]
        if type(tier) is int and 1 <= tier <= count:
            index = tier - 1
    elif "recommended_model" in answer:
        name = answer["recommended_model"]
        index = next(
            (i for i, p in enumerate(virtual.candidates) if name in (p.name, p.served_model_name)),
            None,
        )
    elif "score" in answer:
        score = answer["score"]
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
            index = tier_index(float(score), count, virtual.thresholds)
    return index


class Classifier:
    """Calls the classifiers of virtual models; one per sidecar, on the event loop."""

    def __init__(self, on_fallback: Callable[[str, FallbackReason], None]) -> None:
        self._on_fallback = on_fallback
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=_CONNECTIONS, ttl_dns_cache=30),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        """Close the session (the sidecar's cleanup context calls it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def tier(self, virtual: VirtualModel, body: Mapping[str, object]) -> int | None:
        """The candidate index the virtual model's classifier names; ``None`` when it has
        none or it failed (then counted), and the built-in estimate must decide."""
        spec = virtual.classifier
        if spec is None:
            return None
        payload = {
            "text": request_text(body),
            "model": virtual.name,
            "candidates": [model.name for model in virtual.candidates],
        }
        reason: FallbackReason | None = None
        answer: object = None
        try:
            async with asyncio.timeout(spec.timeout):
                async with self._client().post(spec.url, json=payload) as resp:
                    if resp.status == 200:
                        answer = await resp.json(content_type=None)
                    else:
                        reason = "error"
        except TimeoutError:
            reason = "timeout"
        except (aiohttp.ClientError, OSError):
            reason = "error"
        except ValueError:  # not JSON (json.JSONDecodeError, UnicodeDecodeError)
            reason = "answer"
        index = None if reason else read_answer(answer, virtual)
        if index is None:
            self._on_fallback(virtual.name, reason or "answer")
        return index
