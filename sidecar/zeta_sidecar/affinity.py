"""Prefix and session affinity: the pod a request's cache is on, within the load bound.

A request's keys (:func:`request_keys`):

- the *prefix chain*: the request's text (chat messages rendered as role and content in
  message order, whatever the order of keys in the JSON; or the prompt) cut in blocks of
  ``blockTokens`` tokens, a token counted as :data:`CHARS_PER_TOKEN` characters, each
  block's hash covering every block before it, for the first ``maxBlocks`` blocks only
  (the hashing cost is bounded, whatever the prompt). The chain is this process's own
  (Python's string hash is salted per process): it keys this replica's index and is
  never shared;
- the *placement key*: CRC-32 of the conversation's opening (system messages and the
  first other message, which every later turn repeats; a prompt's whole hashed text),
  the same in every replica;
- the *session*: the session header, or the body's ``user`` field.

The choice (:meth:`AffinityIndex.choose`), among the pods the bounded-load rule
(:func:`under_bound`) leaves:

1. a session whose pin (what this replica last sent it to) is on an eligible pod stays
   there; a pin on a pod over its bound, ejected or gone moves;
2. a prefix goes to the pod this replica last sent its longest known prefix to, when
   that prefix covers the conversation's opening and more (the index knows an earlier
   turn of this very conversation: an opening's full blocks alone may be a system
   prompt that other conversations share). A prompt has no structure that tells a
   shared preamble from its own text: it is placed by its whole hashed text;
3. otherwise the placement order every replica computes alike: rendezvous (highest
   random weight) hashing of the placement key (or session) over the model's pods, the
   first eligible pod in that order. With several gateway replicas a conversation so
   meets the same pod whichever replica its turns reach, with no shared state.

No eligible pod: the ordinary picker decides. Whatever was chosen is recorded in the
index (:meth:`AffinityIndex.record`), which is bounded in entries (least recently used
go first) and trusts an entry for ``indexTTL`` after its last use.
"""

import hashlib
import math
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from zeta_api import Affinity, ModelAffinity

__all__ = [
    "CHARS_PER_TOKEN",
    "AffinityIndex",
    "AffinityPlan",
    "Keys",
    "Lru",
    "block_chain",
    "longest",
    "render",
    "request_keys",
    "under_bound",
]

CHARS_PER_TOKEN = 4
"""Characters per token, to size blocks without a tokenizer: a rough mean of BPE
tokenizers on English text (code and other scripts have fewer per token; a block is
then more tokens than declared, which only makes routing coarser)."""
_SESSION_MAX_CHARS = 256
"""A longer session id is cut: it only needs to tell sessions apart."""
_OPENING_ROLES = frozenset({"system", "developer"})
"""Roles of the messages that open a conversation before its first turn."""
_DEFAULTS = Affinity()
_MASK = (1 << 64) - 1
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class AffinityPlan:
    """One model's affinity settings, resolved once per table, and its pods' seeds."""

    prefix: bool
    session: bool
    block_chars: int
    max_blocks: int
    epsilon: float
    header: str
    user: bool
    seeds: tuple[int, ...]
    """Per pod (the model's serving pods, in order): its rendezvous seed."""
    positions: Mapping[str, int]
    """Pod address to its index among the model's serving pods."""

    @classmethod
    def of(
        cls, own: ModelAffinity | None, router: Affinity | None, addresses: Sequence[str]
    ) -> "AffinityPlan | None":
        """The plan of a model (its ``own`` settings, else the ``router``'s) over the pods
        at ``addresses``; ``None`` when neither kind of affinity is on."""
        settings = own or router
        if settings is None or not (settings.prefix or settings.session):
            return None
        shared = router or _DEFAULTS
        return cls(
            prefix=settings.prefix,
            session=settings.session,
            block_chars=settings.block_tokens * CHARS_PER_TOKEN,
            max_blocks=settings.max_blocks,
            epsilon=settings.load_bound,
            header=shared.session_header,
            user=shared.session_user,
            seeds=tuple(_seed(a) for a in addresses),
            positions={a: i for i, a in enumerate(addresses)},
        )


@dataclass(frozen=True, slots=True)
class Keys:
    """What a request's affinity is decided by."""

    chain: Sequence[int]
    """Hashes of the leading blocks, each covering the blocks before it, shortest first."""
    opening: int
    """Blocks that cover the conversation's opening, a partial last block included."""
    placement: int | None
    """The placement key every replica computes alike; ``None`` without prefix affinity."""
    session: str | None = None
    session_key: int = 0
    """The session's placement key (every replica computes it alike)."""


def _seed(address: str) -> int:
    return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8).digest(), "little")


def _key(text: str) -> int:
    # CRC-32: the same in every process and three times cheaper than BLAKE2b here; 32
    # bits only decide a placement (two keys that collide share a pod: no harm done).
    # surrogatepass: JSON may carry lone surrogates, which strict UTF-8 refuses.
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def _content(content: object) -> str:
    if type(content) is str:
        return content
    if type(content) is list:  # content parts: their text, other parts by type
        parts = []
        for part in content:
            if type(part) is dict:
                text = part.get("text")
                parts.append(text if type(text) is str else f"[{part.get('type')}]")
        return "".join(parts)
    return ""


def render(body: Mapping[str, object], limit: int) -> tuple[str, int] | None:
    """The request's text as the pod reads it first, up to about ``limit`` characters,
    and the length of its opening; ``None`` when the body has neither messages nor a
    prompt string.

    Messages are rendered from their fields, ``role`` then ``content``, each followed
    by a newline, so the JSON's key order and spacing do not matter; an earlier turn's
    rendering is a prefix of a later turn's."""
    messages = body.get("messages")
    if type(messages) is list:
        pieces: list[str] = []
        size = 0
        opening = -1
        for message in messages:
            if type(message) is not dict:
                continue
            role = message.get("role")
            role = role if type(role) is str else ""
            # Cut to what is left of the limit: a huge message is not copied whole.
            piece = f"{role}\n{_content(message.get('content'))[: limit - size]}\n"
            pieces.append(piece)
            size += len(piece)
            if opening < 0 and role not in _OPENING_ROLES:
                opening = size
            if size >= limit:
                break
        return "".join(pieces), size if opening < 0 else opening
    prompt = body.get("prompt")
    if type(prompt) is str:
        return prompt, len(prompt)
    return None


def block_chain(text: str, block_chars: int, max_blocks: int) -> list[int]:
    """Hashes of the full blocks of ``text`` (at most ``max_blocks``), each covering every
    block before it; a partial last block is left out, as the pods' caches leave it."""
    chain = []
    h = block_chars  # different block sizes give different chains
    for start in range(0, min(len(text) // block_chars, max_blocks) * block_chars, block_chars):
        h = hash((h, text[start : start + block_chars]))
        chain.append(h)
    return chain


def request_keys(
    body: Mapping[str, object], headers: Mapping[str, str], plan: AffinityPlan
) -> Keys | None:
    """A request's affinity keys under ``plan``; ``None`` when it has none."""
    session = None
    if plan.session:
        session = headers.get(plan.header)
        if session is None and plan.user:
            user = body.get("user")
            session = user if type(user) is str else None
        if session:
            session = session[:_SESSION_MAX_CHARS]
            return Keys((), 0, None, session, _key(session))
    if not plan.prefix:
        return None
    limit = plan.block_chars * plan.max_blocks
    rendered = render(body, limit)
    if rendered is None:
        return None
    text, opening = rendered
    if not text:
        return None
    chain = block_chain(text, plan.block_chars, plan.max_blocks)
    # Blocks to cover the opening, its partial last block included: the index decides only
    # when it knows more than the opening, since an opening's full blocks may all be a
    # system prompt other conversations share.
    covering = -(-opening // plan.block_chars)
    return Keys(chain, covering, _key(text[: min(opening, limit)]))


def under_bound(
    loads: Sequence[float], capacities: Sequence[int], serving: Sequence[bool], epsilon: float
) -> list[bool]:
    """Pod by pod: serving, and its load with one more request within the bound.

    The bound of a pod is ``ceil((1 + epsilon) * (L + 1) * c / C)``, with ``L`` the
    serving pods' load, ``C`` their capacity and ``c`` the pod's: its share by capacity of
    the load with this request, plus epsilon, rounded up to whole requests (so an idle
    model's pods take one request each, as the paper's bound does). With loads in whole
    requests some serving pod is always within it, the least loaded being at most
    average; a fractional reported load may leave none (the ordinary picker decides)."""
    total = capacity = 0.0
    for load, cap, ok in zip(loads, capacities, serving, strict=True):
        if ok:
            total += load
            capacity += cap
    if capacity <= 0:
        return [False] * len(loads)
    per_unit = (1.0 + epsilon) * (total + 1.0) / capacity
    return [
        ok and load + 1.0 <= math.ceil(per_unit * cap)
        for load, cap, ok in zip(loads, capacities, serving, strict=True)
    ]


class Lru(Generic[K]):
    """A bounded map of keys to pod addresses: least recently put go first, and an entry
    is trusted for ``ttl`` seconds after its last put. Not thread-safe (one event loop)."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        # A dict keeps insertion order: re-putting a key moves it to the end, so the
        # first key is always the least recently put (and the first to expire).
        self._entries: dict[K, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> str | None:
        """The address ``key`` was last put with, unless it expired."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, keys: Sequence[K], address: str, now: float) -> None:
        """Remember each of ``keys`` at ``address`` from ``now`` on."""
        entries = self._entries
        entry = (address, now + self.ttl)
        pop = entries.pop
        for key in keys:
            pop(key, None)
            entries[key] = entry
        # Twice as many expired entries dropped as were put, at most: a cost in proportion
        # to the request's, and one that outpaces the growth, so expired entries do not
        # linger while there is traffic.
        for _ in range(2 * len(keys)):
            first = next(iter(entries))  # usually unexpired: one look, and done
            if entries[first][1] > now:
                break
            del entries[first]
        while len(entries) > self.max_entries:
            del entries[next(iter(entries))]

    def resize(self, max_entries: int, ttl: float) -> None:
        """New bounds; the least recently put entries go if there are too many."""
        self.max_entries, self.ttl = max_entries, ttl
        entries = self._entries
        while len(entries) > max_entries:
            del entries[next(iter(entries))]


def longest(index: Lru[int], chain: Sequence[int], now: float) -> tuple[int, str] | None:
    """The longest prefix of ``chain`` (as a block count) that ``index`` knows, and where
    it went: a binary search, since each request puts its whole chain, so a prefix known
    implies (nearly always) its own prefixes known."""
    low, high = 0, len(chain)
    found = None
    while low < high:
        mid = (low + high + 1) // 2
        address = index.get(chain[mid - 1], now)
        if address is None:
            high = mid - 1
        else:
            low, found = mid, address
    return None if found is None else (low, found)


def _rendezvous(key: int, seeds: Sequence[int], eligible: Sequence[bool]) -> tuple[int, bool]:
    """The first eligible pod in ``key``'s rendezvous order, and whether it is the first
    pod of that order; ``(-1, False)`` when none is eligible.

    A pod's score is a 64-bit mix of the key and its seed (SplitMix64's finaliser): the
    same in every process, so every replica ranks the pods alike; and even, so each pod
    is first for its share of keys (Python's tuple hash, unsalted too, is not even: it
    made one of five pods first for 36% of the keys). A pod that leaves moves only the
    keys it ranked first."""
    scores = []
    for seed in seeds:
        x = ((key ^ seed) * _MIX1) & _MASK
        scores.append(((x ^ (x >> 31)) * _MIX2) & _MASK)
    if not scores:
        return -1, False
    best = scores.index(max(scores))
    if eligible[best]:
        return best, True
    for i in sorted(range(len(scores)), key=scores.__getitem__, reverse=True):
        if eligible[i]:
            return i, False
    return -1, False


class AffinityIndex:
    """What this replica sent where, by prefix block and by session, and the pod a
    request's keys point to."""

    def __init__(self, settings: Affinity | None = None) -> None:
        settings = settings or _DEFAULTS
        self.prefixes: Lru[int] = Lru(settings.index_entries, settings.index_ttl)
        self.sessions: Lru[str] = Lru(settings.index_entries, settings.index_ttl)

    def configure(self, settings: Affinity | None) -> None:
        """Take a new table's bounds (the defaults when it declares none)."""
        settings = settings or _DEFAULTS
        self.prefixes.resize(settings.index_entries, settings.index_ttl)
        self.sessions.resize(settings.index_entries, settings.index_ttl)

    def choose(
        self, keys: Keys, plan: AffinityPlan, eligible: Sequence[bool], now: float
    ) -> tuple[int, str, str]:
        """``(pod index or -1, kind, outcome)`` for a request with ``keys``.

        Kind ``session`` or ``prefix``; outcome ``hit`` (the pod this replica last sent
        the session or prefix to), ``placed`` (the placement order's first pod),
        ``bounded_out`` (the index's pod, or the placement order's first, was over its
        bound or is gone: a later pod of that order),
        ``session_moved`` (the pin's pod is over its bound, ejected or gone) or
        ``no_candidate`` (no pod within the bound: the ordinary picker decides)."""
        moved = bounded = False
        if keys.session is not None:
            kind, key = "session", keys.session_key
            address = self.sessions.get(keys.session, now)
            if address is not None:
                i = plan.positions.get(address, -1)
                if i >= 0 and eligible[i]:
                    return i, kind, "hit"
                moved = True
        else:
            kind, key = "prefix", keys.placement or 0
            found = longest(self.prefixes, keys.chain, now)
            if found is not None and found[0] >= max(1, keys.opening):
                i = plan.positions.get(found[1], -1)
                if i >= 0 and eligible[i]:
                    return i, kind, "hit"
                bounded = True
        i, first = _rendezvous(key, plan.seeds, eligible)
        if i < 0:
            return i, kind, "no_candidate"
        if moved:
            return i, kind, "session_moved"
        return i, kind, "placed" if first and not bounded else "bounded_out"

    def record(self, keys: Keys, address: str, now: float) -> None:
        """Remember that the request with ``keys`` went to ``address``."""
        if keys.session is not None:
            self.sessions.put((keys.session,), address, now)
        else:
            self.prefixes.put(keys.chain, address, now)
