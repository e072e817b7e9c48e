"""The seeded load trace: Poisson arrivals at a rate that follows the scenario's
schedule, and each request's body (prompt length, output length, streaming, difficulty).

The same seed gives the same trace, byte for byte, so every system replays exactly the
same requests at the same offsets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zeta_sidecar.complexity import estimate, tier_index

CHARS_PER_TOKEN = 4
"""What zeta-sim counts as one prompt token."""
PRIORITY_HEADER = "x-zeta-priority"
TENANT_HEADER = "x-zeta-tenant"
"""The CRD's default class and tenant headers (``spec.traffic``)."""

# Filler words with no complexity cue in them (see zeta_sidecar.complexity): only the
# cue sentences decide a request's difficulty, as in the demo.
_FILLER = [
    "the",
    "weather",
    "report",
    "for",
    "the",
    "coast",
    "mentions",
    "light",
    "rain",
    "and",
    "a",
    "warm",
    "wind",
    "in",
    "the",
    "afternoon",
    "while",
    "the",
    "city",
    "council",
    "meets",
    "to",
    "plan",
    "new",
    "bicycle",
    "lanes",
    "near",
    "the",
    "river",
    "and",
    "the",
    "library",
    "opens",
    "a",
    "reading",
    "room",
    "for",
    "children",
    "on",
    "saturday",
    "mornings",
]

_SYSTEM_PREFIXES = tuple(
    f"You are assistant number {i}, a helpful and concise writer for team {i * 7 % 13}. "
    for i in range(8)
)
"""A few shared prefixes, as real traffic has: cache-aware peers can use them."""

EASY = "Say hello and summarise this note in one line: "
MEDIUM = (
    "Write a small helper in Python and explain why it works:\n```python\ndef helper(x): ...\n```\n"
)
HARD = (
    "Prove the theorem below, derive the equation, then analyse the algorithm step by "
    "step:\n```python\ndef solve(n): ...\n```\n"
)


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of the trace; ``at`` is its offset from the start in wall seconds."""

    index: int
    at: float
    model: str
    klass: str
    """easy | medium | hard for virtual-model traffic; 'plain' otherwise."""
    prompt_tokens: int
    max_tokens: int
    stream: bool
    depth: int
    prefix: int
    priority: str = ""
    """The traffic class it names in ``x-zeta-priority`` ('' for none)."""
    tenant: str = ""
    """The tenant it names in ``x-zeta-tenant`` ('' for none)."""

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if self.priority:
            out[PRIORITY_HEADER] = self.priority
        if self.tenant:
            out[TENANT_HEADER] = self.tenant
        return out

    def body(self) -> dict[str, Any]:
        rng = random.Random(self.index)
        cue = {"easy": EASY, "medium": MEDIUM, "hard": HARD}.get(self.klass, "")
        prefix = _SYSTEM_PREFIXES[self.prefix]
        want = max(8, self.prompt_tokens * CHARS_PER_TOKEN - len(cue) - len(prefix))
        filler = words(rng, _FILLER, want)[:want]
        messages: list[dict[str, str]] = [{"role": "system", "content": prefix}]
        # Earlier turns are short: the depth signal, not their length, is what counts.
        for turn in range(self.depth - 2):
            role = "user" if turn % 2 == 0 else "assistant"
            messages.append({"role": role, "content": f"turn {turn} of the talk"})
        messages.append({"role": "user", "content": cue + filler})
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        }


@dataclass(frozen=True, slots=True)
class Mix:
    """What a request looks like; lengths in tokens."""

    stream_share: float = 0.3
    prompt_median: int = 250
    output_median: int = 120
    output_max: int = 400
    classes: Sequence[tuple[str, float]] = (("plain", 1.0),)
    """(class, share): 'plain' for an explicit model; easy/medium/hard for ``auto``."""
    priorities: Sequence[tuple[str, float]] = ()
    """(traffic class, share) named in the class header; none sends no header."""
    tenants: Sequence[tuple[str, float]] = ()
    """(tenant, share) named in the tenant header, '' for no tenant; none sends none."""


def words(rng: random.Random, vocabulary: Sequence[str], chars: int) -> str:
    """Words drawn from ``vocabulary``, joined by spaces, until at least ``chars`` long."""
    drawn: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(vocabulary)
        drawn.append(word)
        size += len(word) + 1
    return " ".join(drawn)


def lognormal(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(median * math.exp(rng.gauss(0.0, sigma)))))


def class_shape(klass: str, rng: random.Random, mix: Mix) -> tuple[int, int, int]:
    """(prompt tokens, max_tokens, depth) for a request of ``klass``.

    The shapes keep each class inside the tier the sidecar's complexity estimate gives
    it (easy -> tier 1, medium -> tier 2, hard -> tier 3), checked in ``tier_check``.
    """
    if klass == "easy":
        return lognormal(rng, 80, 0.5, 20, 200), lognormal(rng, 60, 0.5, 16, 128), 2
    if klass == "medium":
        return lognormal(rng, 250, 0.3, 150, 400), lognormal(rng, 160, 0.3, 100, 256), 2
    if klass == "hard":
        return lognormal(rng, 1100, 0.1, 1000, 1400), lognormal(rng, 320, 0.2, 256, 512), 14
    prompt = lognormal(rng, mix.prompt_median, 0.6, 16, 2000)
    return prompt, lognormal(rng, mix.output_median, 0.6, 8, mix.output_max), 2


def _draw(rng: random.Random, shares: Sequence[tuple[str, float]]) -> str:
    if not shares:
        return ""
    return rng.choices([name for name, _ in shares], [share for _, share in shares])[0]


def generate(
    seed: int,
    *,
    duration: float,
    rate: Callable[[float], float],
    model: str,
    mix: Mix,
    peak_rate: float,
) -> list[TraceRequest]:
    """Poisson arrivals with a time-varying ``rate`` (req/s, wall), by thinning."""
    rng = random.Random(seed)
    out: list[TraceRequest] = []
    t = 0.0
    names = [name for name, _ in mix.classes]
    shares = [share for _, share in mix.classes]
    while True:
        t += rng.expovariate(peak_rate)
        if t >= duration:
            break
        if rng.random() * peak_rate > rate(t):
            continue
        klass = rng.choices(names, shares)[0]
        prompt, max_tokens, depth = class_shape(klass, rng, mix)
        stream = rng.random() < mix.stream_share
        prefix = rng.randrange(len(_SYSTEM_PREFIXES))
        # Drawn last and only when asked for, so traces without classes stay as they were.
        priority = _draw(rng, mix.priorities)
        tenant = _draw(rng, mix.tenants)
        out.append(
            TraceRequest(
                index=len(out),
                at=t,
                model=model,
                klass=klass,
                prompt_tokens=prompt,
                max_tokens=max_tokens,
                stream=stream,
                depth=depth,
                prefix=prefix,
                priority=priority,
                tenant=tenant,
            )
        )
    return out


def tier_check(trace: Sequence[TraceRequest]) -> dict[str, dict[int, int]]:
    """Per class, how many requests the sidecar's complexity estimate puts on each of
    three tiers (0 = smallest): proves the trace's difficulty labels mean what they say."""
    counts: dict[str, dict[int, int]] = {}
    for request in trace:
        tier = tier_index(estimate(request.body()).score, 3)
        per = counts.setdefault(request.klass, {})
        per[tier] = per.get(tier, 0) + 1
    return counts
