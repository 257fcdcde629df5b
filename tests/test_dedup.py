"""Tool-spec dedup: exact copies and near-duplicates merge, distinct tools of one domain do not."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest

from synth.records import ToolSpec, content_id
from synth.toolrepo.dedup import (
    DedupReport,
    Merge,
    NearDuplicateIndex,
    canonical_json,
    dedup,
    jaccard,
    lsh_shape,
    signature,
    similarity,
)


def spec(name: str, description: str, params: dict[str, str] | None = None, **extra: Any) -> ToolSpec:
    properties = {key: {"type": kind} for key, kind in (params or {}).items()}
    parameters = {"type": "object", "properties": properties, "required": list(properties)[:1]}
    ident = extra.pop("id", None) or content_id(name, description, parameters, extra, prefix="tool-")
    return ToolSpec(id=ident, name=name, description=description, parameters=parameters, **extra)


def kept_names(report: DedupReport) -> list[str]:
    return [tool.name for tool in report.kept]


def resolve(report: DedupReport) -> dict[str, str]:
    """spec id -> id of the spec kept in its place (itself when kept)."""
    out = {tool.id: tool.id for tool in report.kept}
    out.update({merge.dropped_id: merge.kept_id for merge in report.merged})
    return out


def check_accounting(specs: list[ToolSpec], report: DedupReport) -> None:
    """Every input is either kept or listed as merged, exactly once, against a spec that was kept."""
    kept_ids = [tool.id for tool in report.kept]
    dropped_ids = [merge.dropped_id for merge in report.merged]
    assert len(kept_ids) + len(dropped_ids) == len(specs)
    assert sorted(kept_ids + dropped_ids) == sorted(tool.id for tool in specs)
    assert {merge.kept_id for merge in report.merged} <= set(kept_ids)
    order = {tool.id: i for i, tool in enumerate(specs)}
    assert [order[i] for i in kept_ids] == sorted(order[i] for i in kept_ids)
    assert [order[i] for i in dropped_ids] == sorted(order[i] for i in dropped_ids)
    for merge in report.merged:
        assert order[merge.kept_id] < order[merge.dropped_id]  # the first of a cluster is kept
        assert 0.0 <= merge.similarity <= 1.0


WEATHER = spec(
    "get_weather",
    "Get the current weather conditions for a city: temperature, humidity, wind speed and a short summary.",
    {"city": "string", "units": "string"},
)

# ---------------------------------------------------------------- planted near-duplicates


def test_renamed_and_reworded_tool_is_a_near_duplicate() -> None:
    renamed = spec(
        "fetch_weather_info",
        "Fetches current weather conditions for the given city: temperature, humidity, wind speed and a summary.",
        {"city": "string", "units": "string"},
    )
    report = dedup([WEATHER, renamed])
    assert kept_names(report) == ["get_weather"]
    [merge] = report.merged
    assert merge == Merge(WEATHER.id, "get_weather", renamed.id, "fetch_weather_info", "near", merge.similarity)
    assert 0.8 <= merge.similarity < 1.0


def test_camel_case_and_snake_case_names_are_near_duplicates() -> None:
    snake = spec(
        "get_weather_forecast",
        "Daily forecast for the next days at a location.",
        {"location": "string", "days": "integer"},
    )
    camel = spec(
        "getWeatherForecast",
        "Daily forecast for the next days at a location.",
        {"location": "string", "days": "integer"},
    )
    camel_params = spec(
        "GetWeatherForecast",
        "Daily forecast for the next days at a location.",
        {"Location": "string", "Days": "integer"},
    )
    assert signature(snake) == signature(camel) == signature(camel_params)
    report = dedup([camel, snake, camel_params])
    assert kept_names(report) == ["getWeatherForecast"]
    assert [(m.dropped_name, m.kind, m.similarity) for m in report.merged] == [
        ("get_weather_forecast", "near", 1.0),
        ("GetWeatherForecast", "near", 1.0),
    ]


def test_a_word_or_two_changed_in_the_description() -> None:
    base = spec(
        "search_flights",
        "Search available flights between two airports on a departure date, with optional return date, "
        "cabin class and passenger count; results are sorted by price and include airline and stops.",
        {"origin": "string", "destination": "string", "departure_date": "string", "passengers": "integer"},
    )
    one = base.model_copy(
        update={"id": "one", "description": base.description.replace("sorted by price", "sorted by duration")}
    )
    two = base.model_copy(
        update={
            "id": "two",
            "description": base.description.replace("sorted by price", "ordered by price").replace(
                "include airline", "include carrier"
            ),
        }
    )
    report = dedup([base, one, two])
    assert kept_names(report) == ["search_flights"]
    assert [(m.dropped_id, m.kind) for m in report.merged] == [("one", "near"), ("two", "near")]
    assert all(0.8 <= m.similarity < 1.0 for m in report.merged)


def test_exact_duplicates_merge_as_exact() -> None:
    copy = WEATHER.model_copy(update={"id": "copy", "category": "other", "domain": "travel", "source": "mcp"})
    reordered = spec("get_weather", WEATHER.description, {"units": "string", "city": "string"}, id="reordered")
    reordered.parameters["required"] = ["city"]  # same schema, keys in another order
    assert canonical_json(reordered) == canonical_json(WEATHER)
    report = dedup([WEATHER, copy, reordered])
    assert report.kept == [WEATHER]
    assert report.merged == [
        Merge(WEATHER.id, "get_weather", "copy", "get_weather", "exact", 1.0),
        Merge(WEATHER.id, "get_weather", "reordered", "get_weather", "exact", 1.0),
    ]
    assert (report.exact, report.near) == (2, 0)


def test_effect_and_returns_are_part_of_the_exact_key() -> None:
    writes = WEATHER.model_copy(update={"id": "w", "effect": "write"})
    returns = WEATHER.model_copy(update={"id": "r", "returns": {"type": "object"}})
    report = dedup([WEATHER, writes, returns])
    assert [(m.dropped_id, m.kind, m.similarity) for m in report.merged] == [("w", "near", 1.0), ("r", "near", 1.0)]


# ---------------------------------------------------------------- distinct tools stay apart

ECOMMERCE = [
    spec(
        "get_order",
        "Get one order by its id: line items, totals, payment status and shipping status.",
        {"order_id": "string"},
    ),
    spec(
        "cancel_order",
        "Cancel an order that has not shipped yet; the payment is voided and stock released.",
        {"order_id": "string", "reason": "string"},
    ),
    spec(
        "list_orders",
        "List a customer's orders, newest first, optionally filtered by status.",
        {"customer_id": "string", "status": "string", "limit": "integer"},
    ),
    spec(
        "refund_order",
        "Refund all or part of a delivered order to the original payment method.",
        {"order_id": "string", "amount": "number", "reason": "string"},
    ),
]
CALENDAR = [
    spec(
        "create_event",
        "Create a calendar event with a title, start and end time and optional attendees.",
        {"title": "string", "start": "string", "end": "string", "attendees": "array"},
        effect="write",
    ),
    spec(
        "delete_event",
        "Delete a calendar event by its id; attendees are notified of the cancellation.",
        {"event_id": "string", "notify": "boolean"},
        effect="write",
    ),
]


def test_distinct_tools_of_one_domain_are_not_merged() -> None:
    specs = ECOMMERCE + CALENDAR
    report = dedup(specs)
    assert report.kept == specs
    assert report.merged == []
    for a, b in itertools.combinations(specs, 2):
        assert similarity(a, b) < 0.5, (a.name, b.name)


def test_same_verb_same_params_different_purpose_not_merged() -> None:
    by_id = [
        spec("get_order", "Get an order by id.", {"order_id": "string"}),
        spec("get_order_invoice", "Get the invoice PDF of an order by id.", {"order_id": "string"}),
        spec("get_order_tracking", "Get the carrier tracking events of an order by id.", {"order_id": "string"}),
    ]
    assert dedup(by_id).merged == []


def test_negation_is_not_a_stopword() -> None:
    shipped = spec("list_orders", "List orders that have shipped.", {"customer_id": "string"})
    unshipped = spec("list_orders", "List orders that have not shipped.", {"customer_id": "string"})
    assert signature(shipped) != signature(unshipped)


# ---------------------------------------------------------------- threshold


def _words(first: int, last: int) -> str:
    return " ".join(f"w{i:02d}" for i in range(first, last + 1))


def test_a_pair_just_under_the_threshold_is_kept_apart() -> None:
    a = spec("sync_inventory", _words(1, 20), {"warehouse": "string"}, id="a")
    b = spec("sync_inventory", _words(5, 21), {"warehouse": "string"}, id="b")
    c = spec("sync_inventory", _words(2, 25), {"warehouse": "string"}, id="c")
    just_over, just_under = similarity(a, b), similarity(a, c)
    assert just_over == 0.8  # at the threshold counts
    assert 0.79 < just_under < 0.8
    assert [m.dropped_id for m in dedup([a, b]).merged] == ["b"]
    assert dedup([a, c]).merged == []
    assert [m.similarity for m in dedup([a, c], threshold=just_under).merged] == [just_under]
    assert dedup([a, c], threshold=just_under + 1e-9).merged == []
    assert dedup([a, b], threshold=0.9).merged == []


def test_threshold_is_validated() -> None:
    with pytest.raises(ValueError):
        dedup([WEATHER], threshold=0.0)
    with pytest.raises(ValueError):
        NearDuplicateIndex(threshold=1.5)


def test_lsh_shape_meets_the_recall_target() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, rows = lsh_shape(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.9999
    assert lsh_shape(0.8, 128) == (25, 5)


# ---------------------------------------------------------------- clusters, incremental index


def _chain() -> tuple[ToolSpec, ToolSpec, ToolSpec]:
    """a ~ b and b ~ c over the threshold, a ~ c under it."""
    a = spec("sync_inventory", _words(1, 20), {"warehouse": "string"}, id="a")
    b = spec("sync_inventory", _words(3, 22), {"warehouse": "string"}, id="b")
    c = spec("sync_inventory", _words(5, 24), {"warehouse": "string"}, id="c")
    assert similarity(a, b) >= 0.8 and similarity(b, c) >= 0.8 and similarity(a, c) < 0.8
    return a, b, c


def test_single_link_chain_merges_through_the_middle() -> None:
    a, b, c = _chain()
    report = dedup([a, b, c])
    assert report.kept == [a]
    assert [(m.kept_id, m.dropped_id) for m in report.merged] == [("a", "b"), ("a", "c")]
    assert report.merged[1].similarity == similarity(a, c) < 0.8  # measured against the kept spec
    index = NearDuplicateIndex()
    assert [index.add(tool) for tool in (a, b, c)] == [None, *report.merged]
    assert index.late_merges == []


def test_a_late_link_between_two_kept_specs() -> None:
    a, b, c = _chain()
    index = NearDuplicateIndex()
    assert index.add(a) is None
    assert index.add(c) is None  # not similar enough to a
    merge = index.add(b)  # similar to both: joins a's cluster and links c to it
    assert merge is not None and (merge.kept_id, merge.dropped_id) == ("a", "b")
    assert [(m.kept_id, m.dropped_id) for m in index.late_merges] == [("a", "c")]
    assert index.kept == [a, c]
    batch = dedup([a, c, b])
    assert batch == index.report()
    assert batch.kept == [a]
    assert [(m.kept_id, m.dropped_id) for m in batch.merged] == [("a", "c"), ("a", "b")]


def test_kind_and_similarity_are_against_the_kept_spec() -> None:
    near = spec("fetch_weather", WEATHER.description, {"city": "string", "units": "string"}, id="near")
    twin = near.model_copy(update={"id": "twin"})  # an exact copy of a spec that is itself dropped
    report = dedup([WEATHER, near, twin])
    assert report.kept == [WEATHER]
    score = similarity(WEATHER, near)
    assert [(m.kept_id, m.dropped_id, m.kind, m.similarity) for m in report.merged] == [
        (WEATHER.id, "near", "near", score),
        (WEATHER.id, "twin", "near", score),
    ]


def test_match_does_not_add() -> None:
    index = NearDuplicateIndex()
    index.add(WEATHER)
    copy = WEATHER.model_copy(update={"id": "copy"})
    assert index.match(copy) == Merge(WEATHER.id, "get_weather", "copy", "get_weather", "exact", 1.0)
    assert index.match(CALENDAR[0]) is None
    assert len(index) == 1


def test_empty_signature_is_never_a_near_duplicate() -> None:
    a = spec("_", "", id="a")
    b = spec("__", "", id="b")
    assert signature(a) == frozenset() and jaccard(signature(a), signature(b)) == 0.0
    assert dedup([a, b]).merged == []
    assert [m.kind for m in dedup([a, a.model_copy(update={"id": "a2"})]).merged] == ["exact"]


# ---------------------------------------------------------------- at scale: 2,000 distinct specs + planted copies

# fmt: off
DOMAINS: dict[str, list[str]] = {
    "commerce": ["order", "cart", "coupon", "shipment", "wishlist",
                "product", "review", "warehouse", "supplier", "return"],
    "finance": ["invoice", "payment", "ledger", "budget", "expense",
               "payroll", "loan", "stock", "dividend", "tax"],
    "travel": ["flight", "hotel", "itinerary", "visa", "luggage",
              "railpass", "cruise", "rental", "airport", "tour"],
    "health": ["patient", "prescription", "appointment", "vaccine", "allergy",
              "clinic", "insurer", "symptom", "dosage", "referral"],
    "devops": ["cluster", "deployment", "pipeline", "secret", "container",
              "alert", "runbook", "incident", "volume", "certificate"],
    "media": ["playlist", "podcast", "episode", "album", "lyric",
             "subtitle", "channel", "thumbnail", "studio", "premiere"],
    "education": ["course", "lecture", "quiz", "grade", "syllabus",
                 "tutor", "classroom", "enrollment", "thesis", "scholarship"],
    "property": ["listing", "tenant", "lease", "mortgage", "inspection",
                "landlord", "parcel", "appraisal", "utility", "neighborhood"],
    "logistics": ["route", "driver", "pallet", "manifest", "depot",
                 "courier", "freight", "container_yard", "dispatch", "customs"],
    "social": ["post", "comment", "follower", "hashtag", "story",
              "mention", "group", "poll", "badge", "invitation"],
}
VERBS = [
    "get", "list", "create", "update", "delete", "search", "archive", "export", "import", "approve",
    "reject", "assign", "schedule", "cancel", "summarize", "validate", "duplicate", "restore", "share", "count",
]
# fmt: on
PHRASES = [
    "Requires an authenticated session with the right role.",
    "Results are paginated with a cursor.",
    "Times are ISO 8601 in UTC.",
    "Fails with not_found when nothing matches.",
    "Rate limited to sixty calls per minute.",
    "Writes are recorded in the audit trail.",
    "Soft limits apply on large accounts.",
    "Returns a confirmation token for follow-up calls.",
    "Idempotent when the same request key is reused.",
    "Localized messages follow the caller locale.",
]
# fmt: off
EXTRA_PARAMS = [
    "limit", "cursor", "sort_by", "since", "until", "locale", "dry_run", "note", "tags", "owner",
    "priority", "region", "currency", "format", "include_archived", "reason", "notify", "timezone",
]
# fmt: on


def make_distinct_specs(seed: int = 7) -> list[ToolSpec]:
    """2,000 distinct tools: every (verb, entity) pair once, with varied descriptions and arguments."""
    rng = random.Random(seed)
    specs = []
    for domain, entities in DOMAINS.items():
        for entity, verb in itertools.product(entities, VERBS):
            noun = entity.replace("_", " ")
            template = rng.choice(
                [
                    "{Verb} the {noun} records of the {domain} workspace that match the request.",
                    "Use this to {verb} a {noun} in {domain}; the {noun} must belong to the caller.",
                    "{Verb} {noun} entries for the current {domain} account and report what changed.",
                    "Lets an agent {verb} one or more {noun} items within the {domain} system.",
                ]
            )
            sentence = template.format(Verb=verb.capitalize(), verb=verb, noun=noun, domain=domain)
            extras = " ".join(rng.sample(PHRASES, rng.randint(0, 2)))
            params = {f"{entity}_id": "string"}
            params.update(dict.fromkeys(rng.sample(EXTRA_PARAMS, rng.randint(1, 4)), "string"))
            name = f"{verb}_{entity}" if verb not in ("list", "search", "count") else f"{verb}_{entity}s"
            specs.append(spec(name, f"{sentence} {extras}".strip(), params, domain=domain))
    assert len({tool.name for tool in specs}) == len(specs) == 2000
    return specs


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


REWORDS = {"records": "entries", "belong": "pertain", "report": "describe", "items": "objects"}


def plant_copies(specs: list[ToolSpec], seed: int = 11) -> list[tuple[str, ToolSpec, ToolSpec]]:
    """(kind, original, copy) for 120 originals: 30 each of exact copies, camelCase renames, synonym
    renames, and one word changed in a description of 18 words or more."""
    rng = random.Random(seed)
    originals = rng.sample(specs, 90)
    long = [tool for tool in specs if len(tool.description.split()) >= 18 and tool not in originals]
    originals += rng.sample(long, 30)
    planted = []
    for i, original in enumerate(originals):
        if i < 30:
            kind, copy = "exact", original.model_copy(update={"source": "mcp"})
        elif i < 60:
            kind, copy = "camel", original.model_copy(update={"name": camel(original.name)})
        elif i < 90:
            renamed = original.name.replace("get_", "fetch_").replace("delete_", "remove_")
            if renamed == original.name:
                renamed = original.name + "_info"
            kind, copy = "synonym", original.model_copy(update={"name": renamed})
        else:
            word = next(word for word in REWORDS if f" {word} " in original.description)
            reworded = original.description.replace(f" {word} ", f" {REWORDS[word]} ", 1)
            kind, copy = "reworded", original.model_copy(update={"description": reworded})
        planted.append((kind, original, copy.model_copy(update={"id": f"copy-{i}-{original.id}"})))
    return planted


@pytest.fixture(scope="module")
def distinct_specs() -> list[ToolSpec]:
    return make_distinct_specs()


def test_two_thousand_distinct_specs_are_all_kept(distinct_specs: list[ToolSpec]) -> None:
    report = dedup(distinct_specs)
    assert report.merged == []
    assert report.kept == distinct_specs


def test_planted_copies_among_them_are_all_found(distinct_specs: list[ToolSpec]) -> None:
    planted = plant_copies(distinct_specs)
    rng = random.Random(3)
    mixed = list(distinct_specs)
    for _, _, copy in planted:
        mixed.insert(rng.randrange(len(mixed) + 1), copy)  # anywhere, so a copy may come first
    report = dedup(mixed)
    check_accounting(mixed, report)
    assert len(report.kept) == 2000
    kept_as = resolve(report)
    for _, original, copy in planted:
        assert kept_as[original.id] == kept_as[copy.id], (original.name, copy.name)
    exact = {tool.id for kind, original, copy in planted if kind == "exact" for tool in (original, copy)}
    assert {m.dropped_id for m in report.merged if m.kind == "exact"} <= exact
    assert report.exact == 30 and report.near == 90

    # the incremental index agrees with the batch, merge for merge
    index = NearDuplicateIndex()
    answers = [index.add(tool) for tool in mixed]
    assert [tool for tool, answer in zip(mixed, answers, strict=True) if answer is None] == report.kept
    assert [answer for answer in answers if answer is not None] == report.merged
    assert index.late_merges == []
    assert index.report() == report


def test_batch_equals_brute_force_single_link(distinct_specs: list[ToolSpec]) -> None:
    """LSH finds every pair the exact all-pairs comparison finds (on a sample, including planted copies)."""
    sample = distinct_specs[::5] + [copy for _, _, copy in plant_copies(distinct_specs)]
    order = ECOMMERCE[0]
    sample += [
        order.model_copy(update={"id": f"x{i}", "description": order.description + " Hi." * i}) for i in (1, 2, 3)
    ]
    sigs = [signature(tool) for tool in sample]
    keys = [canonical_json(tool) for tool in sample]
    parent = list(range(len(sample)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(sample)), 2):
        if keys[i] == keys[j] or jaccard(sigs[i], sigs[j]) >= 0.8:
            ri, rj = find(i), find(j)
            parent[max(ri, rj)] = min(ri, rj)
    expected = {sample[i].id: sample[find(i)].id for i in range(len(sample))}
    report = dedup(sample)
    assert resolve(report) == expected
    assert len(report.merged) > 0


def test_deterministic_across_processes(distinct_specs: list[ToolSpec]) -> None:
    specs = distinct_specs[:300] + [copy for _, _, copy in plant_copies(distinct_specs)][:40]
    here = dedup(specs)
    payload = json.dumps([tool.model_dump() for tool in specs])
    script = (
        "import json, sys\n"
        "from synth.records import ToolSpec\n"
        "from synth.toolrepo.dedup import dedup\n"
        "specs = [ToolSpec(**d) for d in json.loads(sys.stdin.read())]\n"
        "r = dedup(specs)\n"
        "print(json.dumps([[t.id for t in r.kept], [list(m) for m in r.merged]]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], input=payload, capture_output=True, text=True, env=env, check=True
    )
    kept, merged = json.loads(out.stdout)
    assert kept == [tool.id for tool in here.kept]
    assert [Merge(*m) for m in merged] == here.merged
    assert dedup(specs) == here
