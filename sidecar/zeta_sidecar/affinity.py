"""Prefix and session affinity: the pod a request's cache is on, within the load bound.

A request's keys come from :mod:`~zeta_sidecar.affinity_keys`.

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

import math
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

from zeta_api import Affinity
from zeta_sidecar.affinity_keys import AffinityPlan, Keys

__all__ = ["AffinityIndex", "Lru", "longest", "under_bound"]

_DEFAULTS = Affinity()
_MASK = (1 << 64) - 1
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

K = TypeVar("K", bound=Hashable)


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
