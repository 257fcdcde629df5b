"""Exact and near-duplicate detection for tool specs, in batch (`dedup`) or as you go (`NearDuplicateIndex`).

Exact duplicates share the canonical JSON of (name, description, parameters, returns, effect), keys
sorted; id, category, domain, source and the other bookkeeping fields do not count.

Near-duplicates are judged on a *signature*: a set of tokens built from

- the name, split on snake_case / camelCase / kebab-case (``n:`` tokens),
- the top-level parameter names, each normalised to snake_case (``p:`` tokens),
- the description: lowercased words with stopwords out (``d:``) and 2-word shingles of what is left
  (``b:``).

Words are lightly stemmed (plural ``s``) and a few verb synonyms share one form (fetch/retrieve -> get,
remove -> delete, ...), so ``get_weather`` and ``fetch_weather_info`` have the same name tokens.
A tool is mostly its name and its arguments, so name and parameter tokens are weighted by repetition
(each appears `NAME_WEIGHT` / `PARAM_WEIGHT` times as ``tok``, ``tok#1`` ...): the similarity is still
an exact Jaccard of two sets, only the sets are built so that a reworded description alone cannot make
two tools with different names and arguments look alike, and one changed word does not make a copy
look new.

Candidates come from MinHash + LSH banding; every candidate is verified with the exact Jaccard of the
two signatures, so the LSH only decides which pairs are looked at (its shape is chosen so that a pair
at the threshold is missed with probability below 1e-4), never what is merged.

MinHash here is pure Python, no numpy/datasketch dependency: the k hash functions of a token are the
k 32-bit words of one SHAKE-128 digest of it (an extendable-output hash from hashlib: one C call gives
all k values, the same on every platform and under every PYTHONHASHSEED), masked to 31 bits. The k
running minima live in one Python int of k lanes and are updated per token with a branch-free lane-wise
min (a few big-int operations instead of k Python comparisons; see `NearDuplicateIndex._minhash`).

Clusters and the kept representative: specs are linked when their signatures reach the threshold
(or are exact copies); clusters are the connected components (union-find, single link), and the
representative is the *first spec of the cluster in input order*. First-in-order is stable (adding
specs later never changes which earlier spec is kept), matches what an incremental generator can do,
and lets a caller express preference by ordering (curated and real specs before synthetic ones).
With single link a spec can join through another member: its `Merge.similarity` (always measured
against the kept representative) may then be below the threshold.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

from synth.records import ToolSpec

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
NAME_WEIGHT = 3
PARAM_WEIGHT = 3
LSH_RECALL_AT_THRESHOLD = 0.9999

MergeKind = Literal["exact", "near"]


class Merge(NamedTuple):
    """One dropped spec and the spec kept in its place."""

    kept_id: str
    kept_name: str
    dropped_id: str
    dropped_name: str
    kind: MergeKind
    similarity: float


@dataclass(frozen=True)
class DedupReport:
    kept: list[ToolSpec]
    merged: list[Merge]
    threshold: float

    @property
    def exact(self) -> int:
        return sum(1 for merge in self.merged if merge.kind == "exact")

    @property
    def near(self) -> int:
        return sum(1 for merge in self.merged if merge.kind == "near")

    def summary(self) -> str:
        total = len(self.kept) + len(self.merged)
        return f"{total} specs: {len(self.kept)} kept, {self.exact} exact and {self.near} near duplicates merged"


# ---------------------------------------------------------------- signatures

_STOPWORD_TEXT = """
    a an the and or but if then else of to in on at by for with from into onto about as is are was were be
    been being this that these those it its their them they you your we our us i me my he she his her can
    could should would will shall may might must do does did has have had so such than too very also just
    only any all each every some which who whom whose what when where why how there here given specified
    specific provided particular via using based upon per etc e g ie eg info information detail data
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Deliberately not stopwords: not, no, without, never (they flip meaning).

_SYNONYMS = {
    "fetch": "get",
    "retrieve": "get",
    "obtain": "get",
    "lookup": "get",
    "remove": "delete",
    "erase": "delete",
    "destroy": "delete",
    "modify": "update",
    "edit": "update",
    "change": "update",
    "alter": "update",
    "find": "search",
    "query": "search",
    "generate": "create",
    "make": "create",
    "enumerate": "list",
}

_IDENT_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_WORD = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=1 << 16)
def _normal(word: str) -> str:
    stemmed = _stem(word)
    return _SYNONYMS.get(stemmed, stemmed)


def _identifier_parts(identifier: str) -> list[str]:
    parts = [part.lower() for part in _IDENT_PART.findall(identifier)]
    return parts or _WORD.findall(identifier.lower())


def _weighted(prefix: str, tokens: Iterable[str], weight: int) -> Iterator[str]:
    for token in tokens:
        yield prefix + token
        for copy in range(1, weight):
            yield f"{prefix}{token}#{copy}"


def signature(spec: ToolSpec) -> frozenset[str]:
    """The token set near-duplicates are judged on (see the module docstring)."""
    name = [_normal(part) for part in _identifier_parts(spec.name) if part not in _STOPWORDS]
    properties = spec.parameters.get("properties")
    params = (
        ["_".join(_normal(part) for part in _identifier_parts(str(key))) for key in properties]
        if isinstance(properties, dict)
        else []
    )
    words = [_normal(word) for word in _WORD.findall(spec.description.lower()) if word not in _STOPWORDS]
    tokens = set(_weighted("n:", name, NAME_WEIGHT))
    tokens.update(_weighted("p:", (param for param in params if param), PARAM_WEIGHT))
    tokens.update("d:" + word for word in words)
    tokens.update(f"b:{first} {second}" for first, second in zip(words, words[1:], strict=False))
    return frozenset(tokens)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def similarity(a: ToolSpec, b: ToolSpec) -> float:
    """The exact Jaccard similarity of two specs' signatures, in [0, 1]."""
    return jaccard(signature(a), signature(b))


def canonical_json(spec: ToolSpec) -> str:
    """What exact duplicates share: (name, description, parameters, returns, effect), keys sorted."""
    payload = [spec.name, spec.description, spec.parameters, spec.returns, spec.effect]
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def lsh_shape(threshold: float, num_perm: int, recall: float = LSH_RECALL_AT_THRESHOLD) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest stray candidates) whose chance of bringing a pair
    with Jaccard == threshold together, 1 - (1 - t^rows)^bands, is at least `recall`."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


# ---------------------------------------------------------------- the index

_SALT = b"synth.toolrepo.dedup/minhash/v1\x00"
_LANE_VALUE = 0x7FFFFFFF  # 31-bit hash values; bit 31 of every 32-bit lane is the guard of the lane-wise min
_LANE_CACHE_SIZE = 1 << 15  # token -> lanes memo, about 600 bytes a token at 128 lanes (~20 MB), cleared when full


def _repeat_lane(value: int, lanes: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little") * lanes, "little")


@dataclass(slots=True)
class _Probe:
    key: bytes
    tokens: frozenset[str]
    exact_of: int | None
    matches: list[tuple[int, float]]  # (position, similarity) of every indexed spec at/over the threshold
    bands: list[bytes]


class NearDuplicateIndex:
    """Deduplicate as you go: `add(spec)` returns a `Merge` if the spec duplicates something already
    added, else `None` (the spec is new and is kept).

    Every added spec is indexed, duplicates included, so clusters grow by single link exactly as in
    `dedup`; a duplicate is always reported against its cluster's representative (the first spec of
    the cluster that was added). The one thing an incremental index cannot undo: when a new spec links
    two clusters that were both kept, the later representative stays in `kept`; the link is recorded
    in `late_merges`, and `report()` (like `dedup`) merges the two clusters.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, *, num_perm: int = DEFAULT_NUM_PERM) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if num_perm < 1:
            raise ValueError(f"num_perm must be positive, got {num_perm}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = lsh_shape(threshold, num_perm)
        self._values = _repeat_lane(_LANE_VALUE, num_perm)
        self._guard = _repeat_lane(_LANE_VALUE + 1, num_perm)
        self._lane_cache: dict[str, int] = {}
        self._specs: list[ToolSpec] = []
        self._keys: list[bytes] = []
        self._tokens: list[frozenset[str]] = []
        self._parent: list[int] = []
        self._kept: list[int] = []
        self._exact: dict[bytes, int] = {}
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self.late_merges: list[Merge] = []

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def kept(self) -> list[ToolSpec]:
        """The specs `add` returned None for, in order (see the class docstring for late merges)."""
        return [self._specs[pos] for pos in self._kept]

    def match(self, spec: ToolSpec) -> Merge | None:
        """What `add` would return, without adding the spec."""
        probe = self._probe(spec)
        if probe.exact_of is None and not probe.matches:
            return None
        rep = min(self._find(pos) for pos in self._linked(probe))
        return self._merge_of(rep, spec, probe.key, probe.tokens)

    def add(self, spec: ToolSpec) -> Merge | None:
        probe = self._probe(spec)
        pos = len(self._specs)
        self._specs.append(spec)
        self._keys.append(probe.key)
        self._tokens.append(probe.tokens)
        if probe.exact_of is None:
            self._exact[probe.key] = pos
            # An exact copy has its first occurrence's signature: anything similar to it is found
            # through that one, so copies stay out of the LSH tables (so does an empty signature).
            for table, band in zip(self._buckets, probe.bands, strict=False):
                table.setdefault(band, []).append(pos)
        linked = self._linked(probe)
        if not linked:
            self._parent.append(pos)
            self._kept.append(pos)
            return None
        roots = sorted({self._find(other) for other in linked})
        rep = roots[0]
        self._parent.append(rep)
        for other in roots[1:]:
            self._parent[other] = rep
            self.late_merges.append(self._merge_of(rep, self._specs[other], self._keys[other], self._tokens[other]))
        return self._merge_of(rep, spec, probe.key, probe.tokens)

    def report(self) -> DedupReport:
        """Every added spec, clustered: the first of each cluster kept, every other one merged into it."""
        kept: list[ToolSpec] = []
        merged: list[Merge] = []
        for pos, spec in enumerate(self._specs):
            rep = self._find(pos)
            if rep == pos:
                kept.append(spec)
            else:
                merged.append(self._merge_of(rep, spec, self._keys[pos], self._tokens[pos]))
        return DedupReport(kept=kept, merged=merged, threshold=self.threshold)

    # -------------------------------------------------------- internals

    def _probe(self, spec: ToolSpec) -> _Probe:
        key = hashlib.blake2b(canonical_json(spec).encode(), digest_size=16).digest()
        exact_of = self._exact.get(key)
        if exact_of is not None:
            return _Probe(key, self._tokens[exact_of], exact_of, [], [])
        tokens = signature(spec)
        if not tokens:
            return _Probe(key, tokens, None, [], [])
        packed = self._minhash(tokens).to_bytes(4 * self.num_perm, "little")
        width = 4 * self.rows
        bands = [packed[band * width : (band + 1) * width] for band in range(self.bands)]
        candidates: set[int] = set()
        for table, band in zip(self._buckets, bands, strict=True):
            hit = table.get(band)
            if hit is not None:
                candidates.update(hit)
        matches = []
        for other in sorted(candidates):
            score = jaccard(tokens, self._tokens[other])
            if score >= self.threshold:
                matches.append((other, score))
        return _Probe(key, tokens, None, matches, bands)

    def _minhash(self, tokens: Iterable[str]) -> int:
        """The MinHash of the tokens as one int of `num_perm` 32-bit lanes (lane i = min of hash i).

        Lane-wise min without a Python loop over lanes (SIMD within a register): with the guard bit
        (bit 31) set in `acc`'s lanes, (acc | guard) - lanes borrows only inside a lane and leaves the
        guard set exactly where acc >= lanes; that bit, spread over the lane, picks the smaller value.
        """
        guard, spread = self._guard, _LANE_VALUE
        acc: int | None = None
        for token in tokens:
            lanes = self._token_lanes(token)
            if acc is None:
                acc = lanes
                continue
            take = ((((acc | guard) - lanes) & guard) >> 31) * spread
            acc ^= (acc ^ lanes) & take
        return acc or 0

    def _token_lanes(self, token: str) -> int:
        """The token's `num_perm` hash values (31 bits each, 32-bit lanes), from one SHAKE-128 digest."""
        lanes = self._lane_cache.get(token)
        if lanes is None:
            digest = hashlib.shake_128(_SALT + token.encode()).digest(4 * self.num_perm)
            lanes = int.from_bytes(digest, "little") & self._values
            if len(self._lane_cache) >= _LANE_CACHE_SIZE:
                self._lane_cache.clear()
            self._lane_cache[token] = lanes
        return lanes

    @staticmethod
    def _linked(probe: _Probe) -> list[int]:
        if probe.exact_of is not None:
            return [probe.exact_of]
        return [pos for pos, _ in probe.matches]

    def _find(self, pos: int) -> int:
        root = pos
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[pos] != root:
            self._parent[pos], pos = root, self._parent[pos]
        return root

    def _merge_of(self, rep: int, spec: ToolSpec, key: bytes, tokens: frozenset[str]) -> Merge:
        kept = self._specs[rep]
        if key == self._keys[rep]:
            return Merge(kept.id, kept.name, spec.id, spec.name, "exact", 1.0)
        return Merge(kept.id, kept.name, spec.id, spec.name, "near", jaccard(self._tokens[rep], tokens))


def dedup(
    specs: Sequence[ToolSpec], threshold: float = DEFAULT_THRESHOLD, *, num_perm: int = DEFAULT_NUM_PERM
) -> DedupReport:
    """Merge exact and near-duplicate specs; keep the first of each cluster in input order.

    `merged` has one entry per dropped spec, in input order, against the spec kept in its place;
    len(kept) + len(merged) == len(specs). Deterministic: the same input gives the same report.
    """
    index = NearDuplicateIndex(threshold, num_perm=num_perm)
    for spec in specs:
        index.add(spec)
    return index.report()
