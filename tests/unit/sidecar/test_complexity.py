"""The complexity estimate and its mapping onto tiers."""

import pytest

from zeta_sidecar.complexity import estimate, tier_index


def chat(*contents: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": c} for c in contents], **extra}


def test_a_greeting_is_simple() -> None:
    est = estimate(chat("hi", max_tokens=16))
    assert est.score < 0.1
    assert tier_index(est.score, 3) == 0


def test_code_math_and_reasoning_cues_raise_the_tier() -> None:
    hard = chat(
        "Explain why this is slow, step by step, and prove the bound:\n```python\ndef f(x):\n```",
        max_tokens=2048,
    )
    est = estimate(hard)
    assert set(est.cues) == {"code", "math", "reasoning"}
    assert tier_index(est.score, 3) == 2


def test_long_deep_conversations_score_higher_than_short_ones() -> None:
    short = estimate(chat("summarise this"))
    deep = estimate(chat(*(["x" * 800] * 12)))
    assert deep.depth == 12
    assert deep.prompt_chars == 9600
    assert deep.score > short.score + 0.25


def test_completions_prompt_and_content_parts_are_read() -> None:
    assert estimate({"prompt": "integral of x"}).cues == ("math",)
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "compare a, b"}]}]}
    assert estimate(parts).cues == ("reasoning",)


def test_bad_fields_are_ignored_not_fatal() -> None:
    est = estimate({"messages": "nonsense", "max_tokens": -3})
    assert est.max_tokens is None
    assert 0.0 <= est.score <= 1.0


@pytest.mark.parametrize(
    ("score", "tiers", "index"), [(0.0, 3, 0), (0.34, 3, 1), (1.0, 3, 2), (0.9, 1, 0)]
)
def test_tier_index(score: float, tiers: int, index: int) -> None:
    assert tier_index(score, tiers) == index


def test_tier_index_refuses_no_tiers() -> None:
    with pytest.raises(ValueError, match="no tiers"):
        tier_index(0.5, 0)
