"""The provider prompt-cache model: whole-block prefixes only, LRU-bounded, and the exact measure."""

from __future__ import annotations

import pytest

from synth.llm.prefix_cache import CHARS_PER_TOKEN, PrefixCache, render_prompt, shared_prefix_tokens

BLOCK = 4  # tokens per block in these tests: 16 characters


def text(blocks: str) -> str:
    """One 16-character block per letter, so prefixes line up with blocks where the test wants."""
    return "".join(letter * BLOCK * CHARS_PER_TOKEN for letter in blocks)


def test_a_first_prompt_is_not_cached_and_a_repeat_is_cached_whole() -> None:
    cache = PrefixCache(block_tokens=BLOCK)
    assert cache.observe(text("abc")) == 0
    assert cache.observe(text("abc")) == 3 * BLOCK


def test_only_the_blocks_before_the_first_change_are_cached() -> None:
    cache = PrefixCache(block_tokens=BLOCK)
    cache.observe(text("abcd"))
    assert cache.observe(text("abXd")) == 2 * BLOCK  # the 'd' after a change is a new prefix
    assert cache.observe(text("abcdef")) == 4 * BLOCK  # an appended turn keeps the old prompt cached


def test_a_block_seen_after_a_different_prefix_does_not_count() -> None:
    cache = PrefixCache(block_tokens=BLOCK)
    cache.observe(text("xb"))
    assert cache.observe(text("ab")) == 0


def test_a_partial_last_block_is_never_cached() -> None:
    cache = PrefixCache(block_tokens=BLOCK)
    prompt = text("ab") + "tail"
    cache.observe(prompt)
    assert cache.observe(prompt) == 2 * BLOCK


def test_hits_below_the_minimum_count_nothing() -> None:
    cache = PrefixCache(block_tokens=BLOCK, min_tokens=3 * BLOCK)
    cache.observe(text("abc"))
    assert cache.observe(text("abX")) == 0
    assert cache.observe(text("abc")) == 3 * BLOCK


def test_the_least_recently_used_blocks_are_evicted() -> None:
    cache = PrefixCache(block_tokens=BLOCK, capacity_blocks=2)
    cache.observe(text("ab"))
    cache.observe(text("cd"))  # evicts a and b
    assert cache.observe(text("ab")) == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="block_tokens"):
        PrefixCache(block_tokens=0)


def test_exact_shared_prefix_takes_the_best_earlier_prompt() -> None:
    assert shared_prefix_tokens("abcdefgh" * 4, []) == 0
    assert shared_prefix_tokens("abcdefgh" * 4, ["abcdefgh" * 2 + "x", "abcdefgh"]) == 16 // CHARS_PER_TOKEN
    assert shared_prefix_tokens("short", ["short and longer"]) == 1


def test_render_puts_tools_first_and_is_stable_under_key_order() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    one = render_prompt([{"role": "user", "content": "hi"}], tools)
    other = render_prompt([{"content": "hi", "role": "user"}], tools)
    assert one == other
    assert one.index('"name": "f"') < one.index('"hi"')
    longer = render_prompt([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tools)
    assert longer.startswith(one)  # an appended message extends the prompt, as a growing episode does
