"""What a request's affinity is decided by: its model's plan and the request's keys.

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
"""

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zeta_api import Affinity, ModelAffinity

__all__ = ["CHARS_PER_TOKEN", "AffinityPlan", "Keys", "block_chain", "render", "request_keys"]

CHARS_PER_TOKEN = 4
"""Characters per token, to size blocks without a tokenizer: a rough mean of BPE
tokenizers on English text (code and other scripts have fewer per token; a block is
then more tokens than declared, which only makes routing coarser)."""
_SESSION_MAX_CHARS = 256
"""A longer session id is cut: it only needs to tell sessions apart."""
_OPENING_ROLES = frozenset({"system", "developer"})
"""Roles of the messages that open a conversation before its first turn."""
_DEFAULTS = Affinity()


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
