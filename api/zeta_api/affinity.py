"""Affinity: sending a request where its prompt's prefix, or its conversation, already is.

A vLLM pod that holds a prompt's prefix in its KV cache skips that part of the prefill,
so the sidecar may prefer the pod a request's prefix (or its session) was sent to before.
Affinity alone would melt a pod under a hot prefix, so it is bounded by load: a pod whose
estimated load is above ``(1 + loadBound)`` times its model's average is never chosen for
affinity ("consistent hashing with bounded loads", Mirrokni et al., 2018); the request
then goes to the next pod of the placement order every replica computes alike, or to the
ordinary picker.

Declared as the optional ``spec.balancing.affinity`` of a ``ZetaRouter`` (copied into
the routing table with the rest of ``balancing``) and, per model, as
``spec.models[].affinity`` (copied into the table's model entry), which replaces the
router's settings for that model. Both switches are off by default: affinity trades
the picker's even spread for cache hits, which pays only on traffic that repeats
prefixes (chat, shared system prompts, agents); on traffic that does not, it spreads
load less evenly for nothing.
"""

from zeta_api.schema import prop, record

__all__ = ["Affinity", "ModelAffinity"]

_HEADER_PATTERN = r"^[a-z0-9!#$%&'*+.^_`|~-]+$"


@record
class ModelAffinity:
    """How one model's requests keep to the pods that hold their prefix or session."""

    prefix: bool = prop(
        "Prefix affinity: hash the prompt (chat messages as role and content, in order; "
        "or the prompt) in blocks, and send the request to the pod believed to hold its "
        "longest prefix: the one this replica last sent that prefix to, else the pod a "
        "rendezvous hash of the conversation's opening (system messages and the first "
        "other message) names, which every replica computes alike.",
        default=False,
    )
    session: bool = prop(
        "Session affinity: pin the requests of one session (the session header, or the "
        "body's `user` field when sessionUser) to one pod while it is serving and under "
        "its load bound; the pin moves when it is not.",
        default=False,
    )
    block_tokens: int = prop(
        "Tokens per hashed block, a token counted as 4 characters of the rendered text "
        "(a rough mean for English with BPE tokenizers). Coarser than vLLM's 16-token "
        "blocks on purpose: routing needs to know which pod holds a prefix, not its last "
        "tokens, and every block costs hashing and an index entry.",
        default=64,
        minimum=1,
        maximum=4096,
    )
    max_blocks: int = prop(
        "Leading blocks hashed per request (64 blocks of 64 tokens: about 16,000 "
        "characters); the rest of a longer prompt is not looked at, which bounds the "
        "per-request cost.",
        default=64,
        minimum=1,
        maximum=1024,
    )
    load_bound: float = prop(
        "Epsilon of the load bound: a pod whose load with this request would exceed "
        "(1 + loadBound) times the model's average (rounded up to whole requests, per "
        "unit of capacity) is never chosen for affinity. Smaller spreads load more "
        "evenly, larger keeps more requests on their prefix's pod. The default, 1 (at "
        "most twice the average), measured best on long-context sessions: a request "
        "moved off its prefix's pod prefills its whole history elsewhere, so a tight "
        "bound adds the load it means to spread.",
        default=1.0,
        minimum=0,
        maximum=10,
    )


@record
class Affinity(ModelAffinity):
    """The router's affinity settings: every model's, unless it declares its own."""

    session_header: str = prop(
        "The request header that names a session (lower case).",
        default="x-session-id",
        min_length=1,
        max_length=63,
        pattern=_HEADER_PATTERN,
    )
    session_user: bool = prop(
        "Without the session header, the body's `user` field names the session.",
        default=True,
    )
    index_entries: int = prop(
        "Entries each sidecar remembers, per kind (prefix blocks, session pins): the "
        "least recently used go first. About 150 bytes each.",
        default=65536,
        minimum=1,
        maximum=10_000_000,
    )
    index_ttl: float = prop(
        "How long an entry is trusted after the last request that used it (a pod's "
        "cache evicts what is not reused).",
        wire="indexTTL",
        default=600.0,
        duration=True,
        min_seconds=1.0,
    )
