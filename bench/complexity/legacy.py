"""How hard a request looks, estimated from its body alone: a score in [0, 1].

The ``complexity`` strategy of a virtual model maps the score onto its candidates by
tier: with ``n`` candidates, tier index ``min(n - 1, floor(score * n))``; a 0.5 score
on three tiers picks the middle one. No model is consulted and nothing is learnt: it
is a cheap, explainable heuristic an admin can reason about, summing four signals
(each capped, weights summing to 1). Cues weigh most: a short "prove this theorem"
needs a bigger model more than a long "summarise this" does.

============== ====== =====================================================
signal          weight saturates at
============== ====== =====================================================
prompt length   0.20   8,000 characters (~2,000 tokens) of text
depth           0.10   12 messages in the conversation
cues            0.45   3 distinct cue families (code, math, reasoning)
max_tokens      0.25   2,048 requested output tokens (none given: 0.25 of it)
============== ====== =====================================================

Cues: code (a fenced block, ``def``, ``class``, ``function``, ``SELECT``, ``#include``),
math (``\\frac``, ``integral``, ``equation``, ``prove``, ``theorem``, ``$$``) and
reasoning (``step by step``, ``explain why``, ``analy``, ``compare``, ``trade-off``),
matched case-insensitively in the last message (or the prompt), which is what the
model must answer now.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["Estimate", "estimate", "tier_index"]

_PROMPT_CHARS: Final = 8000.0
_DEPTH: Final = 12.0
_MAX_TOKENS: Final = 2048.0
_CUES: Final = (
    ("code", ("```", "def ", "class ", "function", "select ", "#include", "traceback")),
    ("math", ("\\frac", "integral", "equation", "prove", "theorem", "$$", "derivative")),
    ("reasoning", ("step by step", "explain why", "analy", "compare", "trade-off")),
)
# The last message is scanned for cues only up to this length: cost stays bounded.
_CUE_SCAN_CHARS: Final = 4000


@dataclass(frozen=True, slots=True)
class Estimate:
    """A request's complexity and the signals behind it (for logs and tests)."""

    score: float
    prompt_chars: int
    depth: int
    cues: tuple[str, ...]
    max_tokens: int | None


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def estimate(body: Mapping[str, object]) -> Estimate:
    """The complexity estimate of a chat or completion request body."""
    messages = body.get("messages")
    last = ""
    chars = 0
    depth = 1
    if isinstance(messages, list):
        texts = [_text(m.get("content")) for m in messages if isinstance(m, dict)]
        chars = sum(map(len, texts))
        depth = len(texts)
        last = texts[-1] if texts else ""
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            last = " ".join(p for p in prompt if isinstance(p, str))
        elif isinstance(prompt, str):
            last = prompt
        chars = len(last)
    scan = last[:_CUE_SCAN_CHARS].lower()
    cues = tuple(name for name, words in _CUES if any(w in scan for w in words))
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        max_tokens = None
    score = (
        0.20 * min(1.0, chars / _PROMPT_CHARS)
        + 0.10 * min(1.0, (depth - 1) / _DEPTH)
        + 0.45 * len(cues) / len(_CUES)
        + 0.25 * (0.25 if max_tokens is None else min(1.0, max_tokens / _MAX_TOKENS))
    )
    return Estimate(min(1.0, score), chars, depth, cues, max_tokens)


def tier_index(score: float, tiers: int) -> int:
    """The index, among ``tiers`` candidates sorted by tier, a score prefers."""
    if tiers <= 0:
        raise ValueError("no tiers")
    return min(tiers - 1, max(0, int(score * tiers)))
