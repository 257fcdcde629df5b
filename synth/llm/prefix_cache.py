"""A model of a provider's prompt cache: the longest already-seen prefix of a prompt, in whole blocks.

Hosted endpoints (Moonshot, OpenAI, DeepSeek, vLLM's and SGLang's prefix caching) bill or skip the
part of a prompt whose prefix they processed recently, counted in fixed-size blocks of tokens from
the start: one changed byte ends the cached part. The offline model reports `cached_tokens` with
this, so an offline run's cost and `synth stats` show what a layout of prompts would earn, and
`bench/prompt_cache.py` uses it to measure how much of each episode's input is a stable prefix.

Tokens are approximated as four characters (the offline model's count everywhere), so a block is
`4 * block_tokens` characters of the rendered prompt. Only the ratio matters for a layout.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

CHARS_PER_TOKEN = 4


def render_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """A request as the model reads it, in order: the tool declarations, then each message.

    Chat templates (K2's, OpenAI's) put the tools in the system section ahead of the conversation,
    so a change of toolset breaks the prefix before the first message does."""
    parts = [json.dumps(tools or [], ensure_ascii=False, sort_keys=True)]
    parts.extend(json.dumps(message, ensure_ascii=False, sort_keys=True) for message in messages)
    return "\n".join(parts)


def prompt_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def shared_prefix_tokens(text: str, earlier: list[str]) -> int:
    """Tokens of `text` that start the same as some earlier prompt (exact, no block rounding)."""
    best = 0
    for other in earlier:
        limit = min(len(text), len(other))
        if limit <= best:
            continue
        # Compare in halving strides: the common prefix of long prompts is found without a Python loop
        # over every character.
        low, high = best, limit
        while low < high:
            middle = (low + high + 1) // 2
            if text[:middle] == other[:middle]:
                low = middle
            else:
                high = middle - 1
        best = low
    return best // CHARS_PER_TOKEN


class PrefixCache:
    """An LRU of prompt-prefix blocks; `observe` answers how many tokens were cached, then caches all.

    `min_tokens` is the shortest prefix a provider caches at all (OpenAI: 1024); shorter hits count 0.
    """

    def __init__(self, *, block_tokens: int = 64, min_tokens: int = 0, capacity_blocks: int = 200_000) -> None:
        if block_tokens < 1 or min_tokens < 0 or capacity_blocks < 1:
            raise ValueError("block_tokens and capacity_blocks must be positive, min_tokens not negative")
        self.block_tokens = block_tokens
        self.min_tokens = min_tokens
        self._capacity = capacity_blocks
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def observe(self, text: str) -> int:
        """Cached tokens of this prompt (a whole-block prefix seen before), then remember its blocks."""
        size = self.block_tokens * CHARS_PER_TOKEN
        chain = hashlib.blake2b(digest_size=16)
        hits, still_hitting = 0, True
        for start in range(0, len(text) - size + 1, size):
            # A block's key is the hash of everything up to its end, so a block only matches after
            # an identical prefix, as a provider's cache does.
            chain.update(text[start : start + size].encode())
            key = chain.copy().digest()
            if still_hitting and key in self._blocks:
                hits += 1
                self._blocks.move_to_end(key)
                continue
            still_hitting = False
            self._blocks[key] = None
            if len(self._blocks) > self._capacity:
                self._blocks.popitem(last=False)
        cached = hits * self.block_tokens
        return cached if cached >= self.min_tokens else 0
