"""Keyword placement of a tool in a taxonomy: the offline model's answer to a placement request, and
the pipeline's fallback when a model's placement cannot be used.

A tool's words (name words count double) are matched against each domain's words (its name and
entities double, its name a half more, its description and its category's title once), with crude singular forms, each
shared word weighted by how rare it is among the domains (a word every domain has says nothing);
generic verbs and nouns (get, search, status, ...) do not count. The best-scoring domain wins; ties
go to the first in the taxonomy's order, so the answer is a pure function of the inputs. Nothing
rare enough shared: no placement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from synth.llm.offline.text import name_words, words

_FILLER = (
    "a an and any are as at be by can for from get give given in into is it its list of on one or set that the "
    "their them this to use used using with without your you all new via per id ids "
    # verbs and nouns every kind of tool has: they place nothing
    "search find fetch read show view lookup look retrieve query check create add update edit change delete "
    "remove cancel send post put make write run execute start stop status info detail details data record "
    "item items name names type value values number result results current specific based"
)
STOPWORDS = frozenset(_FILLER.split())
MIN_SCORE = 1.5


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _bag(text_words: Iterable[str]) -> set[str]:
    return {_stem(word) for word in text_words if word not in STOPWORDS and len(word) > 1 and not word.isdigit()}


@dataclass(frozen=True)
class DomainCard:
    """What placement knows of one domain."""

    category: str
    domain: str
    named: frozenset[str]
    strong: frozenset[str]
    weak: frozenset[str]

    @classmethod
    def of(cls, category: str, title: str, domain: str, description: str, entities: Sequence[str]) -> DomainCard:
        named = _bag(name_words(domain))
        strong = named | {w for entity in entities for w in _bag(name_words(entity))}
        weak = _bag(words(description)) | _bag(words(title)) | _bag(name_words(category))
        return cls(category, domain, frozenset(named), frozenset(strong), frozenset(weak - strong))


def keyword_place(name: str, description: str, cards: Sequence[DomainCard]) -> tuple[str, str] | None:
    """(category, domain) for a tool, or None when no domain shares a rare enough word with it."""
    named = _bag(name_words(name))
    described = _bag(words(description)) - named
    rarity = _rarity(cards)

    def weight(shared: set[str] | frozenset[str]) -> float:
        return sum(rarity.get(word, 0.0) for word in shared)

    best: tuple[float, int] = (0.0, -1)
    for index, card in enumerate(cards):
        score = 2 * weight(named & card.strong) + weight(named & card.weak) + weight(described & card.strong)
        score += 0.5 * weight((named | described) & card.named)  # the domain's own name says most
        score += 0.5 * weight(described & card.weak)
        if score > best[0]:
            best = (score, index)
    if best[1] < 0 or best[0] < MIN_SCORE:
        return None
    card = cards[best[1]]
    return card.category, card.domain


def _rarity(cards: Sequence[DomainCard]) -> dict[str, float]:
    """log(domains / domains having the word): 0 for a word every domain has."""
    seen: dict[str, int] = {}
    for card in cards:
        for word in card.strong | card.weak:
            seen[word] = seen.get(word, 0) + 1
    return {word: math.log(len(cards) / count) for word, count in seen.items()}


def cards_from_outline(outline: Mapping[str, Mapping[str, object]]) -> list[DomainCard]:
    """Cards from the outline a placement prompt carries: {category: {"title", "domains": {name: text}}}."""
    cards = []
    for category, entry in outline.items():
        title = str(entry.get("title", ""))
        domains = entry.get("domains", {})
        if not isinstance(domains, Mapping):
            continue
        for domain, text in domains.items():
            description, _, entities = str(text).partition(" | ")
            cards.append(DomainCard.of(category, title, domain, description, entities.split(", ") if entities else []))
    return cards
