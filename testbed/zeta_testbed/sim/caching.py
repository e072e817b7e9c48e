"""Automatic prefix caching as vLLM V1 does it, reduced to block hashes and reference counts.

The model (vLLM's ``KVCacheManager`` and ``BlockPool``):

- A prompt is cut in blocks of ``block_size`` tokens (16, vLLM's default on GPUs); only
  full blocks are cached. The sim has no tokenizer, so a token is ``CHARS_PER_TOKEN``
  characters of the prompt's text, the figure it has always used to count prompt tokens
  (the usual rough one for English under BPE tokenizers): a block is 64 characters.
  A prompt given as token ids is cut every ``block_size`` ids.
- Block ``i``'s hash covers block ``i - 1``'s hash and block ``i``'s content, so equal
  hashes mean equal *prefixes*, not just equal blocks; a lookup walks a prompt's chain
  from its start and stops at the first miss.
- A sequence's hit is its longest cached prefix, at most ``prompt_tokens - 1`` tokens
  rounded down to whole blocks: vLLM always recomputes the last prompt token, whose
  logits give the first output token. Blocks are cached when their sequence is admitted,
  so of two sequences admitted in one step, the second already hits on the first.
- The blocks of running sequences are *held*; a block held by several sequences takes
  its room once. A block no sequence holds stays cached but is *free*: the KV-usage
  gauge counts it as unused, as vLLM's does, and it is evicted least recently used first
  when running sequences need its room. A sequence frees its blocks tail first, so the
  end of a prompt is evicted before its start (vLLM does the same), and a shared head
  outlives the many tails that follow it.
- ``queries`` and ``hits`` are vLLM's ``PrefixCacheStats``: every looked-up prompt's
  length and its cached part, both in tokens.
- Full blocks of generated tokens are cached too, as vLLM caches them, so a follow-up
  turn that sends the answer back hits on it. The sim's answer text is known when a
  sequence is submitted (it generates the same words for every request), so the chain
  through the answer is hashed then, and its blocks beyond the prompt's join the cache
  when the sequence finishes (:meth:`PrefixCache.keep`): vLLM caches each as it fills,
  which differs only while the answer is being generated.

Hashes are Python's built-in ``hash`` (vLLM's ``builtin`` option): salted per process,
which suits a cache living in one process, and the cheapest; a 64-bit collision faking a
hit is negligible. Pure computation: no I/O and no clock.
"""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_BLOCK_SIZE", "PrefixCache", "block_hashes"]

CHARS_PER_TOKEN: Final = 4
"""Characters of prompt text the sim counts as one token."""

DEFAULT_BLOCK_SIZE: Final = 16
"""Tokens per KV-cache block: vLLM's ``--block-size`` default on CUDA."""

_ROOT: Final = hash("zeta-sim prefix cache")
"""The parent of every chain's first block."""


def block_hashes(
    prompt: str | Sequence[int], block_size: int = DEFAULT_BLOCK_SIZE, *, limit: int | None = None
) -> list[int]:
    """The chained hashes of a prompt's full blocks, at most ``limit`` of them.

    ``prompt`` is text (``CHARS_PER_TOKEN`` characters a token) or token ids.
    """
    width = block_size * CHARS_PER_TOKEN if isinstance(prompt, str) else block_size
    count = len(prompt) // width
    if limit is not None:
        count = min(count, limit)
    hashes: list[int] = []
    parent = _ROOT
    for start in range(0, count * width, width):
        chunk = prompt[start : start + width]
        # A slice of a list is a list, which does not hash.
        parent = hash((parent, chunk if isinstance(chunk, str) else tuple(chunk)))
        hashes.append(parent)
    return hashes


class PrefixCache:
    """Cached blocks by hash: held ones with their holders' count, free ones in LRU order."""

    __slots__ = ("_free", "_held", "block_size", "capacity_blocks", "hits", "queries")

    def __init__(self, *, block_size: int, capacity_tokens: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.block_size = block_size
        self.capacity_blocks = capacity_tokens // block_size
        """Blocks the KV cache holds, cached or not; free blocks get what is left."""
        self.queries = 0
        """Prompt tokens looked up (vLLM's ``prefix_cache_queries``)."""
        self.hits = 0
        """Prompt tokens found cached (vLLM's ``prefix_cache_hits``)."""
        self._held: dict[int, int] = {}
        # Least recently freed first: the next to be evicted.
        self._free: OrderedDict[int, None] = OrderedDict()

    @property
    def cached_blocks(self) -> int:
        """Blocks whose content is cached, held or free."""
        return len(self._held) + len(self._free)

    def acquire(self, blocks: Sequence[int], prompt_tokens: int) -> tuple[int, int]:
        """Look up an admitted sequence's prompt, then hold its blocks.

        ``blocks`` are the hashes of the prompt's full blocks. Returns the tokens found
        cached, whose prefill the sequence skips, and the tokens of blocks other running
        sequences already hold, which take no new room.
        """
        self.queries += prompt_tokens
        usable = max(0, prompt_tokens - 1) // self.block_size
        held, free = self._held, self._free
        hit = shared = 0
        for index, block in enumerate(blocks):
            holders = held.get(block)
            if holders is not None:
                held[block] = holders + 1
                shared += 1
                found = True
            else:
                found = block in free
                if found:
                    del free[block]
                held[block] = 1
            # Only an unbroken run from the first block is a usable prefix.
            if found and hit == index and index < usable:
                hit += 1
        hit_tokens = hit * self.block_size
        self.hits += hit_tokens
        return hit_tokens, shared * self.block_size

    def keep(self, blocks: Sequence[int]) -> None:
        """Cache a finished sequence's answer blocks as free, tail first (so the end of
        an answer is evicted before its start, and before the prompt released after it).
        A block another sequence holds is left to it."""
        held, free = self._held, self._free
        for block in reversed(blocks):
            if block not in held:
                free[block] = None
                free.move_to_end(block)

    def release(self, blocks: Sequence[int]) -> int:
        """Stop holding a sequence's blocks; returns the tokens other sequences still hold."""
        held, free = self._held, self._free
        shared = 0
        for block in reversed(blocks):
            holders = held[block]
            if holders > 1:
                held[block] = holders - 1
                shared += 1
            else:
                del held[block]
                free[block] = None
        return shared * self.block_size

    def reset(self) -> bool:
        """Forget every free block, as vLLM's ``reset_prefix_cache`` does; refused (False)
        while running sequences hold blocks. The counters keep counting, as vLLM's do."""
        if self._held:
            return False
        self._free.clear()
        return True

    def trim(self, held_tokens: int) -> None:
        """Evict free blocks, least recently used first, until they fit beside
        ``held_tokens``, the tokens running sequences hold."""
        room = self.capacity_blocks + (-held_tokens // self.block_size)
        free = self._free
        for _ in range(len(free) - max(0, room)):
            free.popitem(last=False)
