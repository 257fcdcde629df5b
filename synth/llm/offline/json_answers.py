"""JSON-mode answers of the offline model, chosen by the title of the schema the prompt carries.

The pipeline's prompts describe each answer with a JSON Schema in a ```json block and give their
inputs as `Key: value` lines. A real model reads the same prompt; the offline model reads it
literally, so its answers are schema-valid and follow the inputs (tools match their domain, verdicts
follow the transcript) instead of being random filler.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from synth.llm.offline.instances import instance
from synth.llm.offline.placement import cards_from_outline, keyword_place
from synth.llm.offline.text import fields, humanize, json_blocks, json_field, name_words

READ_VERBS = ("get", "list", "search", "check", "lookup", "find")
WRITE_VERBS = ("create", "update", "cancel", "delete", "schedule", "submit")
WRITE_NOTE = "This changes data."


def answer_json(prompt: str, rng: random.Random) -> dict[str, Any]:
    """The answer for a JSON-mode request whose prompt (all message text) is `prompt`."""
    schema = next(
        (block for block in json_blocks(prompt) if isinstance(block, dict) and "title" in block), {"type": "object"}
    )
    handler = HANDLERS.get(str(schema.get("title")), _generic)
    return handler(prompt, schema, rng)


def _generic(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    value = instance(schema, rng)
    return value if isinstance(value, dict) else {"value": value}


# ---------------------------------------------------------------- generator: tools


def _tool_batch(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    info = fields(prompt)
    domain = info.get("domain", "general").split(" ")[0]
    entities = [e.strip() for e in info.get("entities", "item").split(",") if e.strip()] or ["item"]
    count = int(info.get("count", "5") or 5)
    tools, names = [], set()
    for index in range(count):
        entity = entities[index % len(entities)]
        write = index % 3 == 2
        verb = (WRITE_VERBS if write else READ_VERBS)[(index // len(entities) + rng.randrange(6)) % 6]
        name = f"{verb}_{entity}"
        if name in names:
            name = f"{name}_{domain}"[:64]
        names.add(name)
        tools.append(_tool(name, verb, entity, domain, write, rng))
    return {"tools": tools}


def _tool(name: str, verb: str, entity: str, domain: str, write: bool, rng: random.Random) -> dict[str, Any]:
    label = humanize(entity)
    id_field = f"{entity}_id"
    properties: dict[str, Any]
    if verb in ("list", "search", "find"):
        properties = {
            "query": {"type": "string", "description": f"words to match in the {label}"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "most results"},
        }
        required = ["query"]
        returns = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}
    elif verb == "create" or verb == "submit" or verb == "schedule":
        properties = {
            "name": {"type": "string", "description": f"name of the new {label}"},
            "notes": {"type": "string", "description": "free text"},
            "priority": {"type": "string", "enum": ["low", "normal", "high"]},
        }
        required = ["name"]
        returns = {"type": "object", "properties": {id_field: {"type": "string"}, "status": {"type": "string"}}}
    else:
        properties = {id_field: {"type": "string", "description": f"identifier of the {label}"}}
        required = [id_field]
        if verb == "update":
            properties["status"] = {"type": "string", "description": f"new status of the {label}"}
            required.append("status")
        returns = {"type": "object", "properties": {id_field: {"type": "string"}, "status": {"type": "string"}}}
    action = {"get": "Get", "check": "Check", "lookup": "Look up"}.get(verb, verb.capitalize())
    description = f"{action} {label} records in the {humanize(domain)} system."
    if write:
        description += f" {WRITE_NOTE}"
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
        "returns": returns,
        "effect": "write" if write else "read",
        "failure_modes": ["not_found", "rate_limited"] + (["conflict"] if write else []),
    }


# ---------------------------------------------------------------- generator: agents and tasks


def _agent_draft(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    info = fields(prompt)
    domain = humanize(info.get("domain", "general").split(" ")[0])
    tools = json_field(prompt, "Tools") or []
    tone = info.get("tone", "friendly")
    policy = info.get("policy", "")
    role = rng.choice(["assistant", "operations agent", "support specialist", "concierge"])
    lines = [
        f"You are a {tone} {domain} {role}.",
        f"You can use these tools: {', '.join(str(t) for t in tools)}.",
        "Use the tools to answer; never invent results. Ask when required information is missing.",
    ]
    if policy:
        lines.append(f"Policy: {policy}")
    return {"name": f"{domain} {role}".title(), "system_prompt": " ".join(lines)}


def _task_draft(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    info = fields(prompt)
    kind = info.get("rubric kind", "single_lookup")
    tools: list[dict[str, Any]] = json_field(prompt, "Tools") or []
    wanted = int(info.get("tool count", "1") or 1)
    reads = [t for t in tools if t.get("effect") != "write"]
    writes = [t for t in tools if t.get("effect") == "write"]
    if kind in ("policy_constrained", "multi_step_transaction") and writes:
        chosen = [rng.choice(reads)] if reads and wanted > 1 else []
        chosen.append(rng.choice(writes))
    else:
        pool = reads or tools
        chosen = rng.sample(pool, min(max(wanted, 2 if kind == "parallel_calls" else 1), len(pool)))
    details: dict[str, str] = {}
    asks = []
    for tool in chosen:
        args = instance(tool.get("parameters", {}), rng)
        required = tool.get("parameters", {}).get("required", [])
        for key in required:
            if key in args and isinstance(args[key], str | int | float):
                details[key] = str(args[key])
        asks.append(humanize(str(tool.get("name", "it"))))
    joiner = " and at the same time " if kind == "parallel_calls" else " and then "
    hidden = dict(details)
    # A clarification task leaves one required detail out of the opening request.
    shown = dict(list(details.items())[1:]) if kind == "clarification_needed" else details
    detail_text = ", ".join(f"{k} {_quoted(v)}" for k, v in shown.items())
    request = f"Please {joiner.join(asks)}" + (f" with {detail_text}." if detail_text else ".")
    using = ", ".join(f"{k}={v}" for k, v in hidden.items())
    return {
        "prompt": request,
        "user_goal": f"Get the assistant to {joiner.join(asks)} using {using}.",
        "details": hidden,
        "difficulty": info.get("difficulty", "medium"),
        "expected_tools": [str(t.get("name")) for t in chosen],
        "checkpoints": [f"calls {t.get('name')}" for t in chosen] + ["reports the outcome to the user"],
        "initial_state": {},
        "criteria": _applicable_criteria(json_field(prompt, "Criteria") or [], info.get("agent policy", "")),
    }


def _quoted(value: str) -> str:
    return f'"{value}"' if " " in value else value


def _applicable_criteria(criteria: list[str], policy: str) -> list[str]:
    # A confirmation policy is tested by asking first; any other policy by refusing what it forbids.
    confirming = "confirm" in policy.lower()
    return [
        name
        for name in criteria
        if not (("confirm" in name and not confirming) or (("refuse" in name or "alternative" in name) and confirming))
    ]


# ---------------------------------------------------------------- tool world model


def _collection(tool_name: str) -> str:
    parts = [w for w in name_words(tool_name) if w not in READ_VERBS + WRITE_VERBS]
    return ("_".join(parts) or "items") + "s"


def _tool_outcome(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    tool = json_field(prompt, "Tool") or {}
    state = json_field(prompt, "State") or {}
    args = json_field(prompt, "Arguments") or {}
    outcome = fields(prompt).get("outcome", "success")
    name = str(tool.get("name", "tool"))
    collection = _collection(name)
    key = next((str(v) for k, v in sorted(args.items()) if k.endswith("id")), None)
    if outcome.startswith("edge_case"):
        if "not_found" in outcome:
            return {"result": {"error": "not_found", "message": f"no record {key or ''} found"}, "state_patch": {}}
        if "conflict" in outcome:
            return {
                "result": {"error": "conflict", "message": "the record changed; reload and retry"},
                "state_patch": {},
            }
        return {"result": {"items": [], "note": "nothing matched"}, "state_patch": {}}
    if outcome.startswith("partial_failure"):
        return {"result": {"status": "partial", "detail": "some fields could not be processed"}, "state_patch": {}}
    if tool.get("effect") == "write":
        key = key or f"{collection[:3].upper()}-{rng.randint(1000, 9999)}"
        record = {**args, "status": str(args.get("status", "done"))}
        return {"result": {"status": "ok", "id": key, **record}, "state_patch": {collection: {key: record}}}
    stored = state.get(collection, {}) if isinstance(state.get(collection), dict) else {}
    if key is not None and key in stored:
        return {"result": {"id": key, **stored[key]}, "state_patch": {}}
    if stored:
        return {"result": {"items": [{"id": k, **v} for k, v in list(stored.items())[:5]]}, "state_patch": {}}
    result = instance(tool.get("returns") or {"type": "object"}, rng)
    if isinstance(result, dict) and key is not None:
        result.setdefault("id", key)
    return {"result": result if isinstance(result, dict) else {"value": result}, "state_patch": {}}


# ---------------------------------------------------------------- judge


def _judge(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    criteria = json_field(prompt, "Criteria") or []
    expected = set(json_field(prompt, "Expected tools") or [])
    transcript = next((b for b in json_blocks(prompt) if isinstance(b, list)), [])
    facts = _facts(transcript)
    covered = len(expected & facts["ok_calls"]) / len(expected) if expected else 1.0
    finished = 1.0 if facts["final_answer"] else 0.4
    scores = []
    for criterion in criteria:
        name = str(criterion.get("name", "criterion"))
        text = set(name_words(name))
        if text & {"recover", "recovers", "recovery"}:
            score = 1.0 if facts["recovered"] or not facts["errors"] else 0.2
            why = "retried after the tool error" if facts["recovered"] else "no tool error, or no retry"
        elif "parallel" in text:
            score = 1.0 if facts["max_parallel"] > 1 else 0.3
            why = f"at most {facts['max_parallel']} calls in one message"
        elif text & {"asks", "ask", "clarification", "clarifying", "confirmation", "confirm", "missing"}:
            score = 1.0 if facts["questions"] else 0.3
            why = f"{facts['questions']} question(s) to the user"
        else:
            score = covered * finished
            why = f"covered {covered:.0%} of the expected tools; final answer: {bool(facts['final_answer'])}"
        jitter = rng.uniform(-0.05, 0.05)
        scores.append({"name": name, "score": round(min(1.0, max(0.0, score + jitter)), 3), "rationale": why})
    return {"scores": scores}


def _facts(transcript: list[Any]) -> dict[str, Any]:
    names_by_id: dict[str, str] = {}
    ok_calls: set[str] = set()
    errors: list[str] = []
    recovered = False
    questions = 0
    max_parallel = 0
    final_answer = ""
    for message in transcript:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "assistant":
            calls = message.get("tool_calls") or []
            max_parallel = max(max_parallel, len(calls))
            for call in calls:
                name = str(call.get("function", {}).get("name", ""))
                names_by_id[str(call.get("id"))] = name
                if name in errors:
                    recovered = True
            content = message.get("content") or ""
            if not calls and content:
                questions += content.count("?")
                final_answer = content
        elif role == "tool":
            name = names_by_id.get(str(message.get("tool_call_id")), "")
            if '"error"' in (message.get("content") or ""):
                errors.append(name)
            else:
                ok_calls.add(name)
    return {
        "ok_calls": ok_calls,
        "errors": errors,
        "recovered": recovered,
        "questions": questions,
        "max_parallel": max_parallel,
        "final_answer": final_answer,
    }


# ---------------------------------------------------------------- generator: domains

_FACETS = (
    "analytics",
    "billing",
    "scheduling",
    "compliance",
    "inventory",
    "notifications",
    "reporting",
    "onboarding",
    "support",
    "auditing",
    "forecasting",
    "pricing",
    "routing",
    "monitoring",
    "payments",
    "contracts",
    "quality",
    "training",
    "procurement",
    "feedback",
    "maintenance",
    "booking",
    "claims",
    "licensing",
    "returns",
    "loyalty",
    "dispatch",
    "verification",
    "archiving",
    "approvals",
)
_MODIFIERS = (
    "mobile",
    "enterprise",
    "regional",
    "community",
    "wholesale",
    "premium",
    "municipal",
    "rural",
    "cross_border",
    "subscription",
    "self_service",
    "collaborative",
    "realtime",
    "federated",
    "field",
    "outsourced",
    "cooperative",
    "peer",
    "managed",
    "boutique",
    "nonprofit",
    "campus",
    "industrial",
)
_FACET_ENTITY = {
    "analytics": "metric",
    "billing": "invoice",
    "scheduling": "slot",
    "compliance": "rule",
    "inventory": "stock_item",
    "notifications": "alert",
    "reporting": "report",
    "onboarding": "applicant",
    "support": "ticket",
    "auditing": "audit_entry",
    "forecasting": "forecast",
    "pricing": "price_rule",
    "routing": "route",
    "monitoring": "check",
    "payments": "payment",
    "contracts": "contract",
    "quality": "inspection",
    "training": "course",
    "procurement": "purchase_order",
    "feedback": "review",
    "maintenance": "work_order",
    "booking": "reservation",
    "claims": "claim",
    "licensing": "license",
    "returns": "return_request",
    "loyalty": "reward",
    "dispatch": "dispatch_job",
    "verification": "document",
    "archiving": "archive",
    "approvals": "approval",
}


def _domain_batch(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    info = fields(prompt)
    parent = info.get("parent", "general").split(" ")[0]
    entities = [e.strip() for e in info.get("parent entities", "item").split(",") if e.strip()]
    existing = set(json_field(prompt, "Existing") or [])
    deepen = info.get("mode", "broaden") == "deepen"
    count = int(info.get("count", "8") or 8)
    words = list(_FACETS if deepen else _MODIFIERS)
    rng.shuffle(words)
    out = []
    for word in words:
        name = f"{parent}_{word}" if deepen else f"{word}_{parent}"
        if name in existing or len(name) > 64:
            continue
        extra = _FACET_ENTITY.get(word, f"{word}_account")
        label = humanize(word)
        description = (
            f"{label.capitalize()} for {humanize(parent)} software."
            if deepen
            else f"{humanize(parent).capitalize()} software for {label} settings."
        )
        # A new domain acts on its own kind of records, so its tools are not its parent's again.
        own = [f"{word}_{entity}"[:40] for entity in entities[:3]]
        out.append({"name": name, "description": description, "entities": [extra, *own]})
        if len(out) == count:
            break
    return {"domains": out}


def _tool_placement(prompt: str, schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Each listed tool placed by its words (see `synth.llm.offline.placement`); unplaceable ones left out."""
    outline = json_field(prompt, "Taxonomy") or {}
    tools = json_field(prompt, "Tools") or []
    cards = cards_from_outline(outline) if isinstance(outline, dict) else []
    placements = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        place = keyword_place(str(tool.get("name", "")), str(tool.get("description", "")), cards)
        if place is not None:
            placements.append({"name": tool.get("name"), "category": place[0], "domain": place[1]})
    return {"placements": placements}


HANDLERS: dict[str, Callable[[str, dict[str, Any], random.Random], dict[str, Any]]] = {
    "ToolPlacement": _tool_placement,
    "ToolBatch": _tool_batch,
    "AgentDraft": _agent_draft,
    "TaskDraft": _task_draft,
    "ToolOutcome": _tool_outcome,
    "JudgeAnswer": _judge,
    "DomainBatch": _domain_batch,
}
