"""How hard a request looks, estimated from its body alone: a score in (0, 1) and a tier.

The ``complexity`` strategy of a virtual model maps the score onto its candidates (sorted
by tier) by thresholds: with thresholds ``t1 < t2`` over three candidates, a score below
``t1`` picks the first, below ``t2`` the second, else the third. A virtual model may
declare its thresholds in the ZetaRouter; without them, :func:`default_thresholds` gives
the ones fitted with the model. The model is calibrated so that they are 1/3 and 2/3, so
the default splits the score evenly whatever the number of candidates.

The score is an ordinal logistic model trained on the tuning part of the project's
evaluation set (``bench/complexity/``: the set, its labelling rule, ``train.py``) and
shipped as the constants of :mod:`zeta_sidecar.complexity_model`:
``score = sigmoid(bias + weights of the words present + signals . signal weights)``.

- Words: the lower-cased words of the last message, the one the model must answer now,
  split on punctuation except the marks of code and maths (``$ ^ = ` \\``), read in its
  first 400 and last 200 characters (cost stays bounded; in a long document the question
  is at either end). Presence only: a word counts once.
- Signals (:data:`SIGNALS`): the length of the conversation and of the last message (log),
  its depth, a system prompt, the line count, the clause count (commas, semicolons and
  "and": how many demands a request makes), ``max_tokens`` if given (and whether it is).

Nothing learns or calls out at run time: :func:`score`, the hot path, is a split, a set
intersection and a few additions (figures in ``bench/results/complexity.md``).
:func:`explain` names the terms that weighed most, for the debug header and logs. The
first estimator's cue families (:data:`_CUES`: code, math and reasoning phrases, found in
the same head and tail of the last message) are weighed by nothing now, and shown by
nothing the sidecar answers: only :func:`estimate` returns them, for tests and for
people reading a request's estimate; the words carry them.
"""

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import mul
from typing import Final

from zeta_sidecar import complexity_model

__all__ = [
    "DEFAULT_MODEL",
    "SIGNALS",
    "Estimate",
    "Model",
    "default_thresholds",
    "describe",
    "estimate",
    "explain",
    "extract",
    "score",
    "tier_index",
]

_CUES: Final = (
    ("code", ("```", "def ", "class ", "function", "select ", "#include", "traceback")),
    ("math", ("\\frac", "integral", "equation", "prove", "theorem", "$$", "derivative")),
    ("reasoning", ("step by step", "explain why", "analy", "compare", "trade-off")),
)
_HEAD: Final = 400
_TAIL: Final = 200
# Words are split on bytes: bytes.translate (punctuation to spaces) and bytes.split run
# in C and cost a third of their str counterparts, a regex several times more. Kept as
# parts of words: the marks of code and maths ($ ^ = ` \\).
_PUNCTUATION: Final = b"!\"#%&'()*+,-./:;<>?@[]_{|}~\t\n\r"
_SPACES: Final = bytes.maketrans(_PUNCTUATION, b" " * len(_PUNCTUATION))
_LOG_CHARS: Final = math.log1p(20000.0)
_LOG_TOKENS: Final = math.log2(8192.0)

#: The signals' names, in the order of :attr:`Model.signal_weights`.
SIGNALS: Final = (
    "length",
    "last_length",
    "depth",
    "system",
    "lines",
    "clauses",
    "max_tokens_set",
    "max_tokens",
)


@dataclass(frozen=True, slots=True)
class Model:
    """A trained ordinal model: word weights, signal weights, a bias, fitted thresholds."""

    words: Mapping[str, float]
    signal_weights: tuple[float, ...]
    bias: float
    thresholds: tuple[float, ...]
    """Fitted for three tiers: ``score >= thresholds[k]`` is above tier ``k + 1``."""
    weights: Mapping[bytes, float] = field(default_factory=dict)
    """The words' weights keyed by their UTF-8 bytes, as :func:`score` reads them."""
    vocabulary: frozenset[bytes] = frozenset()
    """The words as a set: intersecting two sets runs in C."""

    def __post_init__(self) -> None:
        if len(self.signal_weights) != len(SIGNALS):
            raise ValueError(f"{len(SIGNALS)} signal weights expected")
        weights = {w.encode(): v for w, v in self.words.items()}
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "vocabulary", frozenset(weights))


DEFAULT_MODEL: Final = Model(
    complexity_model.WORDS,
    complexity_model.SIGNAL_WEIGHTS,
    complexity_model.BIAS,
    complexity_model.THRESHOLDS,
)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A request's complexity and what it was estimated from (for logs and tests)."""

    score: float
    prompt_chars: int
    depth: int
    cues: tuple[str, ...]
    """The cue families of the last message: reported, not weighed (the words are)."""
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


def _read(body: Mapping[str, object]) -> tuple[str, int, int, float, int | None]:
    """The last message, total characters, depth, a system prompt (1.0), max_tokens."""
    messages = body.get("messages")
    last = ""
    chars = 0
    depth = 1
    system = 0.0
    if isinstance(messages, list):
        texts = []
        for m in messages:
            if isinstance(m, dict):
                texts.append(_text(m.get("content")))
                if m.get("role") in ("system", "developer"):
                    system = 1.0
        chars = sum(map(len, texts))
        depth = (len(texts) - int(system)) or 1
        last = texts[-1] if texts else ""
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            last = " ".join(p for p in prompt if isinstance(p, str))
        elif isinstance(prompt, str):
            last = prompt
        chars = len(last)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        max_tokens = None
    return last, chars, depth, system, max_tokens


def _scan(last: str) -> str:
    if len(last) > _HEAD + _TAIL:
        last = last[:_HEAD] + " " + last[-_TAIL:]
    return last.lower()


def extract(body: Mapping[str, object]) -> tuple[frozenset[bytes], tuple[float, ...]]:
    """The words and the signal values (in :data:`SIGNALS` order) a model reads."""
    last, chars, depth, system, max_tokens = _read(body)
    scan = _scan(last).encode("utf-8", "replace")
    words = frozenset(scan.translate(_SPACES).split())
    signals = (
        min(1.0, math.log1p(chars) / _LOG_CHARS),
        min(1.0, math.log1p(len(last)) / _LOG_CHARS),
        min(1.0, (depth - 1) / 12.0),
        system,
        min(1.0, scan.count(b"\n") / 20.0),
        min(1.0, (scan.count(b",") + scan.count(b";") + scan.count(b" and ")) / 10.0),
        0.0 if max_tokens is None else 1.0,
        0.0 if max_tokens is None else min(1.0, math.log2(max_tokens) / _LOG_TOKENS),
    )
    return words, signals


def _sigmoid(z: float) -> float:
    if z < -30.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def score(body: Mapping[str, object], model: Model = DEFAULT_MODEL) -> float:
    """The complexity score of a chat or completion request body, in [0, 1]: the hot path."""
    words, signals = extract(body)
    # map() runs the loops in C; the model has one weight per signal (checked when built).
    z = model.bias + sum(map(model.weights.__getitem__, words & model.vocabulary))
    return _sigmoid(z + sum(map(mul, signals, model.signal_weights)))


def estimate(body: Mapping[str, object], model: Model = DEFAULT_MODEL) -> Estimate:
    """The score and what it was estimated from."""
    last, chars, depth, _, max_tokens = _read(body)
    scan = _scan(last)
    cues = tuple(name for name, phrases in _CUES if any(p in scan for p in phrases))
    return Estimate(score(body, model), chars, depth, cues, max_tokens)


def explain(body: Mapping[str, object], model: Model = DEFAULT_MODEL, top: int = 4) -> str:
    """The terms that moved the score most, strongest first: ``"prove+1.9 thanks-1.2"``.

    For the debug header and log line only: it costs a sort, the hot path does not."""
    words, signals = extract(body)
    terms = [(w.decode("utf-8", "replace"), model.weights[w]) for w in words & model.vocabulary]
    terms += [
        (name, value * weight)
        for name, value, weight in zip(SIGNALS, signals, model.signal_weights, strict=True)
        if value
    ]
    terms.sort(key=lambda t: (-abs(t[1]), t[0]))
    return " ".join(f"{name}{weight:+.1f}" for name, weight in terms[:top])


def describe(
    body: Mapping[str, object],
    thresholds: Sequence[float],
    tiers: int,
    *,
    classified: int | None = None,
    model: Model = DEFAULT_MODEL,
) -> str:
    """Why a request went to its tier, as one ASCII line for a debug header or a log:
    ``score=0.71 tier=3/3 thresholds=0.33,0.67 signals=prove+0.8 ...``; with
    ``classified`` (the candidate index an external classifier named), that tier and
    ``by=classifier``. Costs a few estimates: only on request (``x-zeta-debug: 1``)."""
    value = score(body, model)
    if classified is None:
        tier, by = tier_index(value, tiers, thresholds) + 1, "estimate"
    else:
        tier, by = classified + 1, "classifier"
    cuts = ",".join(f"{t:.2f}" for t in thresholds)
    line = (
        f"score={value:.2f} tier={tier}/{tiers} by={by} thresholds={cuts} "
        f"signals={explain(body, model).replace(' ', ',')}"
    )
    return line.encode("ascii", "replace").decode()


def default_thresholds(tiers: int, model: Model = DEFAULT_MODEL) -> tuple[float, ...]:
    """Thresholds for ``tiers`` candidates when the virtual model declares none.

    Three tiers get the fitted ones. Other counts split the score's range evenly after
    mapping it piecewise-linearly so that the fitted thresholds fall at 1/3 and 2/3: two
    candidates split halfway between the fitted thresholds, four at their quarter points.
    """
    if tiers <= 0:
        raise ValueError("no tiers")
    fitted = model.thresholds
    anchors = [0.0, *fitted, 1.0]
    steps = len(anchors) - 1
    out = []
    for k in range(1, tiers):
        pos = k / tiers * steps
        i = min(int(pos), steps - 1)
        frac = pos - i
        out.append(anchors[i] + frac * (anchors[i + 1] - anchors[i]))
    return tuple(out)


def tier_index(score: float, tiers: int, thresholds: Sequence[float] | None = None) -> int:
    """The index, among ``tiers`` candidates sorted by tier, a score prefers.

    ``thresholds`` (one fewer than ``tiers``, increasing) split the score; without them
    the range is split evenly."""
    if tiers <= 0:
        raise ValueError("no tiers")
    if thresholds:
        return min(tiers - 1, bisect_right(thresholds, score))
    return min(tiers - 1, max(0, int(score * tiers)))
