"""The seeded trace of multi-turn conversations: what prefix caching and affinity are for.

Each conversation opens with one of a few shared system prompts (of realistic length),
then sends turns: every turn re-sends the whole history (the system prompt, each
earlier question and answer) plus a new question, as a chat client does. Conversations
start as a Poisson process and each turn follows the one before after an exponential
think time, so requests arrive as the sum of many independent streams (near-Poisson).
Conversations start before the trace does (as far back as a long one lasts), so the
rate is steady from its first second; their earlier turns are not sent, and a
conversation's first sent turn finds no history cached, whoever routes it.

The text is filler words drawn from seeds: the same seed gives the same trace, byte for
byte, for every system. An answer in the history is the text the simulated pods generate
for the previous turn's ``max_tokens`` (they answer every request alike, as a model with
greedy decoding answers one prompt), so each turn sends back exactly what the pod said,
as a chat client does; a pod that cached that answer's blocks (vLLM does) hits on it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from routing.trace import CHARS_PER_TOKEN, lognormal, words
from zeta_testbed.sim.wire import generated_text

SESSION_HEADER = "x-session-id"
"""The CRD's default ``sessionHeader``: clients that name their conversation send it."""

_PROSE = (
    "the model answers each question with care and cites the relevant section of the "
    "policy document while the team reviews the deployment plan for the new cluster and "
    "the support desk logs every ticket about billing refunds shipping delays and account "
    "access so that the weekly report shows trends across regions products and channels"
)
_WORDS = _PROSE.split()


@dataclass(frozen=True, slots=True)
class Chat:
    """What the conversations look like; lengths in tokens, times in model seconds."""

    system_prompts: int = 8
    system_min: int = 500
    system_max: int = 2000
    """System prompt lengths are spread evenly over this range, prompt by prompt."""
    hot_share: float = 0.0
    """Share of conversations opening with the longest system prompt (the last), the
    rest drawing evenly among the others; 0: every prompt equally likely."""
    turns_mean: float = 6.0
    turns_max: int = 16
    user_median: int = 120
    output_median: int = 150
    output_max: int = 400
    think_mean: float = 15.0
    """Mean model seconds between a turn's start and the next one's: reading an answer
    and typing the next question (people take 10-60 s; 15 is the quick end)."""
    session_share: float = 0.5
    """Share of conversations that name themselves in ``x-session-id``."""

    def system_tokens(self, system: int) -> int:
        if self.system_prompts == 1:
            return self.system_min
        step = (self.system_max - self.system_min) / (self.system_prompts - 1)
        return round(self.system_min + step * system)

    @property
    def turns_expected(self) -> float:
        """Mean turns of a conversation (geometric, capped at ``turns_max``)."""
        p = 1.0 / self.turns_mean
        return sum((1 - p) ** k for k in range(self.turns_max))


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One turn of one conversation; ``at`` is its offset from the start in wall seconds.
    The load generator's view of it is :class:`routing.trace.TraceRequest`'s."""

    index: int
    at: float
    model: str
    conversation: int
    turn: int
    """0 for the conversation's first turn."""
    system: int
    system_tokens: int
    history: tuple[tuple[int, int], ...]
    """(question tokens, answer ``max_tokens``) of each earlier turn."""
    user_tokens: int
    max_tokens: int
    session: bool
    stream: bool = True
    klass: str = "chat"
    priority: str = ""
    tenant: str = ""

    @property
    def prompt_tokens(self) -> int:
        """As the sim counts them: a token per 4 characters of the messages' contents."""
        history = sum(q + _answer_tokens(a) for q, a in self.history)
        return self.system_tokens + history + self.user_tokens

    @property
    def new_tokens(self) -> int:
        """Tokens no cache can hold: the new question (the system prompt is shared, and
        the history, the last answer with it, was the previous turn's)."""
        return self.user_tokens

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if self.session:
            out[SESSION_HEADER] = f"conversation-{self.conversation}"
        return out

    def body(self) -> dict[str, Any]:
        c = self.conversation
        messages = [{"role": "system", "content": _text(f"s{self.system}", self.system_tokens)}]
        for turn, (question, answer) in enumerate(self.history):
            messages.append({"role": "user", "content": _text(f"q{c}.{turn}", question)})
            messages.append({"role": "assistant", "content": generated_text(answer)})
        messages.append({"role": "user", "content": _text(f"q{c}.{self.turn}", self.user_tokens)})
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        }


@functools.lru_cache(maxsize=1024)
def _answer_tokens(max_tokens: int) -> int:
    """Prompt tokens of an answer sent back: the sim's words run longer than 4 characters."""
    return -(-len(generated_text(max_tokens)) // CHARS_PER_TOKEN)


@functools.lru_cache(maxsize=8192)
def _text(seed: str, tokens: int) -> str:
    """``tokens`` tokens of filler words, the same for the same seed."""
    want = tokens * CHARS_PER_TOKEN
    # The first word names the seed, so two texts of the same length differ at once.
    return (seed + " " + words(random.Random(seed), _WORDS, want))[:want]


def generate(
    seed: int,
    *,
    duration: float,
    rate: Callable[[float], float],
    model: str,
    chat: Chat,
    peak_rate: float,
    time_scale: float,
) -> list[ChatRequest]:
    """Turns of conversations started at ``rate / turns_expected`` per wall second (by
    thinning against ``peak_rate``), from one long conversation's span before 0 on;
    think times in model seconds run ``time_scale`` times faster."""
    rng = random.Random(seed)
    turns_mean = chat.turns_expected
    think = chat.think_mean / time_scale
    lead = chat.turns_max * think
    out: list[tuple[float, int, int, int, int, tuple[tuple[int, int], ...], int, bool]] = []
    t = -lead
    conversation = 0
    hot = chat.system_prompts - 1  # the longest system prompt
    while True:
        t += rng.expovariate(peak_rate / turns_mean)
        if t >= duration:
            break
        if rng.random() * peak_rate > rate(max(0.0, t)):
            continue
        if not chat.hot_share:
            system = rng.randrange(chat.system_prompts)
        elif rng.random() < chat.hot_share:
            system = hot
        else:
            system = rng.randrange(hot)
        turns = 1
        while turns < chat.turns_max and rng.random() > 1.0 / chat.turns_mean:
            turns += 1
        session = rng.random() < chat.session_share
        at = t
        history: list[tuple[int, int]] = []
        for turn in range(turns):
            question = lognormal(rng, chat.user_median, 0.7, 8, 2000)
            answer = lognormal(rng, chat.output_median, 0.6, 16, chat.output_max)
            if 0 <= at < duration:
                out.append((at, conversation, turn, system, question, tuple(history),
                            answer, session))  # fmt: skip
            history.append((question, answer))
            at += rng.expovariate(1.0 / think)
        conversation += 1
    out.sort(key=lambda row: row[0])
    return [
        ChatRequest(
            index=i,
            at=at,
            model=model,
            conversation=conv,
            turn=turn,
            system=system,
            system_tokens=chat.system_tokens(system),
            history=history,
            user_tokens=question,
            max_tokens=answer,
            session=session,
        )
        for i, (at, conv, turn, system, question, history, answer, session) in enumerate(out)
    ]


def shape(requests: Sequence[ChatRequest]) -> dict[str, float]:
    """Mean tokens per request: the whole prompt, its shared system prompt, what no
    cache can hold, the output; and the share of turns after the first."""
    n = max(1, len(requests))
    return {
        "prompt": sum(r.prompt_tokens for r in requests) / n,
        "system": sum(r.system_tokens for r in requests) / n,
        "new": sum(r.new_tokens for r in requests) / n,
        "output": sum(r.max_tokens for r in requests) / n,
        "follow_ups": sum(1 for r in requests if r.turn) / n,
    }


def ceiling(requests: Sequence[ChatRequest]) -> float:
    """The hit rate of a perfect cache-aware router on this trace, with unbounded caches:
    each turn finds its conversation's last sent turn cached, its prompt and the answer
    to it, a first sent turn its system prompt."""
    seen: dict[int, int] = {}
    hit = total = 0
    for r in sorted(requests, key=lambda r: r.at):
        total += r.prompt_tokens
        hit += seen.get(r.conversation, r.system_tokens)
        seen[r.conversation] = r.prompt_tokens + _answer_tokens(r.max_tokens)
    return hit / total if total else 0.0
