"""Seeded ground-truth task scenarios for the executable sandboxes (tau2-bench style).

`make_scenario(sandbox, kind, rng)` builds a small, varied initial state, the user's opening message,
the hidden goal and the expected actions whose replay defines the correct end state (`matches_expected`).
Prompts are written so that a plain keyword-following agent can succeed and a real model reads them
naturally: each expected tool is named by its humanized name ("move file"), in call order, and no other
tool's name appears; every argument value is written as `key "value"` (integers bare: `key 12`) in the
prompt or, for clarification scenarios, only in `details` under its exact key; a key used by two calls
has the same value in both; each call carries exactly the arguments the user stated; only parallel
scenarios say "at the same time".

`SCENARIO_KINDS` lists the kinds each sandbox supports; for any other kind `make_scenario` falls back
to `multi_step_transaction` and says so in `Scenario.kind`. Error recovery is built where a natural
first attempt fails and a different read recovers (a moved file, a stale event id): `expected_tools`
start with the failing tool, `expected_actions` hold only the calls that succeed. The shop has no such
case (its failures need a corrected retry of the same tool), so it falls back. Policy-constrained
scenarios carry the agent policy they test (confirm before writing) in `Scenario.policy`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from posixpath import basename, dirname
from typing import Any

from synth.llm.k2 import k2_tool_call_id
from synth.records import RUBRIC_KINDS, FunctionCall, RubricKind, ToolCall

FALLBACK_KIND: RubricKind = "multi_step_transaction"
Step = tuple[str, dict[str, Any]]
State = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    sandbox: str  # key of SANDBOXES
    kind: RubricKind  # the rubric kind this scenario exercises (after any fallback)
    prompt: str  # the user's opening message
    user_goal: str  # the whole goal (hidden from the agent)
    details: dict[str, str]  # facts the user reveals only when asked, under their argument key
    initial_state: dict[str, Any]
    expected_actions: list[ToolCall]  # ids "functions.NAME:IDX", IDX from 0; arguments as JSON text
    expected_tools: list[str]  # tools the agent should call, in order (may include a failing first try)
    policy: str = ""  # the agent policy a policy_constrained scenario tests (for the agent's system prompt)


@dataclass
class _Draft:
    prompt: str
    goal: str
    state: State
    steps: list[Step]
    details: dict[str, str] = field(default_factory=dict)
    tools: list[str] | None = None
    policy: str = ""


Builder = Callable[[random.Random], _Draft]


def say(key: str, value: object) -> str:
    """`key "value"` (an integer bare: `key 12`), the way a keyword-reading agent picks values up."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{key} {value}"
    if '"' in str(value):
        raise ValueError(f"scenario values cannot contain double quotes: {value!r}")
    return f'{key} "{value}"'


def phrase(step: Step, omit: tuple[str, ...] = ()) -> str:
    """'move file with source "a" and destination "b"': the tool's humanized name and its arguments."""
    name, args = step
    said = [say(key, value) for key, value in args.items() if key not in omit]
    text = name.replace("_", " ")
    if not said:
        return text
    return f"{text} with " + (said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1])


def _pool(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


def _reveal(details: dict[str, str]) -> str:
    return ", ".join(f"give {say(key, value)}" for key, value in details.items())


_CONFIRM = " When the assistant asks you to confirm, say yes."
_ASK = {
    "read_file": "tell me what it says",
    "list_dir": "tell me what is in that folder",
    "search_files": "tell me which files match",
    "get_event": "tell me who is invited",
    "list_events": "tell me what they have on",
    "find_free_slot": "tell me when it is",
    "search_products": "tell me the price and stock of what you find",
    "get_balance": "tell me how much money the shop has",
}


def _lookup(world: Callable[[random.Random], State], reads: Callable[[random.Random, State], list[Step]]) -> Builder:
    """single_lookup: one of the sandbox's reads."""

    def build(rng: random.Random) -> _Draft:
        state = world(rng)
        step = rng.choice(reads(rng, state))
        prompt = f"Please {phrase(step)} and {_ASK[step[0]]}."
        return _Draft(prompt, f"You want the assistant to {phrase(step)} and {_ASK[step[0]]}.", state, [step])

    return build


def _parallel(world: Callable[[random.Random], State], reads: Callable[[random.Random, State], list[Step]]) -> Builder:
    """parallel_calls: two reads of different tools whose argument keys do not overlap."""

    def build(rng: random.Random) -> _Draft:
        state = world(rng)
        options = reads(rng, state)
        pairs = [(a, b) for i, a in enumerate(options) for b in options[i + 1 :] if not set(a[1]) & set(b[1])]
        first, second = rng.choice(pairs)
        prompt = f"Please {phrase(first)} and {phrase(second)} at the same time, then sum up both answers for me."
        goal = f"You want two independent answers in one go: {phrase(first)}, and {phrase(second)}."
        return _Draft(prompt, goal, state, [first, second])

    return build


def _confirmed(rng: random.Random, state: State, check: Step, write: Step, goal: str, policy: str) -> _Draft:
    """policy_constrained: a write the policy says to confirm, sometimes after a read to double-check."""
    if rng.random() < 0.5:
        prompt = f"Please {phrase(check)} so I can double-check it, and then {phrase(write)}."
        return _Draft(prompt, goal + _CONFIRM, state, [check, write], policy=policy)
    return _Draft(f"Please {phrase(write)}.", goal + _CONFIRM, state, [write], policy=policy)


def _recovery(state: State, failing: Step, fallback: Step, excuse: str, ask: str, goal: str) -> _Draft:
    """error_recovery: the first call fails (not found), a different read recovers."""
    prompt = f"Please {phrase(failing)}. {excuse}, {phrase(fallback)} and {ask}."
    return _Draft(prompt, goal, state, [fallback], tools=[failing[0], fallback[0]])


# ---------------------------------------------------------------- file system

_FS_TOPICS = _pool("agenda|budget|roadmap|recipes|travel|garden|invoices|packing|contacts|ideas")
_FS_FOLDERS = _pool("notes|reports|drafts|projects")
_FS_LINES = _pool(
    "Call the plumber on Friday|Book train tickets to Lyon|Ask Dana about the Q3 numbers|Renew the library card"
    "|Water the tomatoes twice a week|Send the slides to Omar|Buy oat milk and coffee|Check the laptop warranty"
)
_FS_POLICY = "Before writing, moving or deleting a file, tell the user exactly what you will do and wait for a yes."


def _fs_world(rng: random.Random) -> State:
    """Two folders of two files each, and an empty `archive` folder."""
    topics, folders = rng.sample(_FS_TOPICS, 4), rng.sample(_FS_FOLDERS, 2)
    files = {
        f"{folders[number % 2]}/{topic}.{rng.choice(('md', 'txt'))}": rng.choice(_FS_LINES) + "\n"
        for number, topic in enumerate(topics)
    }
    return {"files": files, "dirs": ["archive"]}


def _new_file(rng: random.Random, state: State, folder: str) -> str:
    """A file name in `folder` that does not exist yet."""
    used = {basename(path).split(".")[0] for path in state["files"]}
    return f"{folder}/{rng.choice([topic for topic in _FS_TOPICS if topic not in used])}.txt"


def _fs_reads(rng: random.Random, state: State) -> list[Step]:
    path, pattern = rng.choice(list(state["files"])), rng.choice(("*.md", "*.txt"))
    return [
        ("read_file", {"path": path}),
        ("list_dir", {"path": dirname(path)}),
        ("search_files", {"pattern": pattern}),
    ]


def _fs_transaction(rng: random.Random) -> _Draft:
    state = _fs_world(rng)
    old = rng.choice(list(state["files"]))
    variant = rng.randrange(3)
    if variant == 0:
        new = _new_file(rng, state, dirname(old))
        write: Step = ("write_file", {"path": new, "content": rng.choice(_FS_LINES)})
        move: Step = ("move_file", {"source": new, "destination": f"archive/{basename(new)}"})
        prompt = f"Please {phrase(write)}, and then {phrase(move)}."
        return _Draft(prompt, f"Create a note at {new} and file it in the archive.", state, [write, move])
    if variant == 1:
        steps = [
            ("read_file", {"path": old}),
            ("move_file", {"source": old, "destination": f"archive/{basename(old)}"}),
        ]
        prompt = f"Please {phrase(steps[0])} so I can check it, and then {phrase(steps[1])}."
        return _Draft(prompt, f"Check {old} and archive it.", state, steps)
    folder = f"{dirname(old)}/{rng.choice(('done', 'old', 'shared', '2024'))}"
    steps = [
        ("make_dir", {"path": folder}),
        ("move_file", {"source": old, "destination": f"{folder}/{basename(old)}"}),
        ("search_files", {"pattern": basename(old)}),
    ]
    prompt = f"Please {phrase(steps[0])}, then {phrase(steps[1])}, and finally {phrase(steps[2])} to confirm."
    return _Draft(prompt, f"Tidy {old} into a new folder {folder} and confirm it landed there.", state, steps)


def _fs_clarify(rng: random.Random) -> _Draft:
    state = _fs_world(rng)
    old = rng.choice(list(state["files"]))
    if rng.random() < 0.5:
        step: Step = ("write_file", {"path": _new_file(rng, state, dirname(old)), "content": rng.choice(_FS_LINES)})
        prompt = f"I need a new note. Please {phrase(step, omit=('path',))}, and ask me where to save it."
        details, want = {"path": step[1]["path"]}, f"a new note saying {step[1]['content']!r} saved"
    else:
        step = ("move_file", {"source": old, "destination": f"archive/{basename(old)}"})
        prompt = f"Please {phrase(step, omit=('destination',))} out of its folder; ask me where it should go."
        details, want = {"destination": step[1]["destination"]}, f"{old} moved to the archive"
    return _Draft(prompt, f"You want {want}. Only when asked, {_reveal(details)}.", state, [step], details=details)


def _fs_recover(rng: random.Random) -> _Draft:
    state = _fs_world(rng)
    moved = rng.choice(list(state["files"]))
    state["files"][f"archive/{basename(moved)}"] = state["files"].pop(moved)
    goal = f"Find out where {basename(moved)} went: it is no longer at {moved} but in the archive folder."
    excuse = "I may have moved it, so if it is not there"
    fallback: Step = ("search_files", {"pattern": basename(moved)})
    return _recovery(state, ("read_file", {"path": moved}), fallback, excuse, "tell me where it is now", goal)


def _fs_policy(rng: random.Random) -> _Draft:
    state = _fs_world(rng)
    path = rng.choice(list(state["files"]))
    check, write = ("read_file", {"path": path}), ("delete_file", {"path": path})
    return _confirmed(rng, state, check, write, f"Get rid of {path}.", _FS_POLICY)


# ---------------------------------------------------------------- calendar

_CAL_TITLES = _pool(
    "Design review|Quarterly planning|Team standup|Customer call|Hiring panel|Lunch and learn|Roadmap sync|Vendor demo"
)
_CAL_PEOPLE = tuple(f"{name}@example.com" for name in _pool("dana|omar|li|sam|noor|ana"))
_CAL_ROOMS = _pool("Atlas|Borealis|Cedar|Dune")
_CAL_POLICY = "Before creating, updating or cancelling an event, say what you will do and wait for the user's yes."


def _cal_world(rng: random.Random) -> State:
    """Four non-overlapping events on one day; rooms are free-form (no room list)."""
    day = f"2025-{rng.randint(3, 11):02d}-{rng.randint(1, 28):02d}"
    hours = sorted(rng.sample(range(8, 17), 4))
    events = [
        {
            "id": f"evt-{number}",
            "title": title,
            "start": f"{day}T{hour:02d}:00:00+00:00",
            "end": f"{day}T{hour:02d}:{rng.choice((30, 45))}:00+00:00",
            "room": rng.choice(_CAL_ROOMS),
            "attendees": sorted(rng.sample(_CAL_PEOPLE, 2)),
            "description": "",
        }
        for number, (hour, title) in enumerate(zip(hours, rng.sample(_CAL_TITLES, 4), strict=True), start=1)
    ]
    return {"events": events}


def _slot(rng: random.Random, state: State) -> Step:
    day = state["events"][0]["start"][:10]
    minutes = rng.choice((30, 45, 60))
    return "find_free_slot", {"duration_minutes": minutes, "window_start": f"{day}T08:00", "window_end": f"{day}T18:00"}


def _on(name: str, event: dict[str, Any]) -> Step:
    return name, {"event_id": event["id"]}


def _cal_reads(rng: random.Random, state: State) -> list[Step]:
    event = rng.choice(state["events"])
    person = rng.choice(sorted({person for other in state["events"] for person in other["attendees"]}))
    return [_on("get_event", event), ("list_events", {"attendee": person}), _slot(rng, state)]


def _cal_transaction(rng: random.Random) -> _Draft:
    state = _cal_world(rng)
    event = rng.choice(state["events"])
    steps = [_on("get_event", event), _on("cancel_event", event)]
    prompt = f"Please {phrase(steps[0])} to check it is the {event['title']}, and then {phrase(steps[1])}"
    goal = f"Call off the {event['title']} ({event['id']})."
    if rng.random() < 0.5:
        steps.append(_slot(rng, state))
        prompt += f"; after that, {phrase(steps[2])} so I can rebook it"
        goal += f" Then find a free {steps[2][1]['duration_minutes']}-minute slot that day to rebook it."
    return _Draft(prompt + ".", goal, state, steps)


def _cal_clarify(rng: random.Random) -> _Draft:
    state = _cal_world(rng)
    event = rng.choice(state["events"])
    prompt = f'Please cancel event "{event["title"]}" for me; ask me for its id if you need it.'
    details = {"event_id": event["id"]}
    goal = f"Cancel the {event['title']}. Only when asked, {_reveal(details)}."
    return _Draft(prompt, goal, state, [_on("cancel_event", event)], details=details)


def _cal_recover(rng: random.Random) -> _Draft:
    state = _cal_world(rng)
    event = rng.choice(state["events"])
    stale = f"evt-{len(state['events']) + rng.randint(3, 40)}"
    goal = f"Learn when the {event['title']} is; the id {stale} you remember no longer exists."
    excuse = "That number may be out of date, so if it is not found"
    fallback: Step = ("list_events", {"attendee": event["attendees"][0]})
    ask = f"tell me when the {event['title']} is"
    return _recovery(state, ("get_event", {"event_id": stale}), fallback, excuse, ask, goal)


def _cal_policy(rng: random.Random) -> _Draft:
    state = _cal_world(rng)
    event = rng.choice(state["events"])
    goal = f"Cancel the {event['title']} ({event['id']})."
    return _confirmed(rng, state, _on("get_event", event), _on("cancel_event", event), goal, _CAL_POLICY)


# ---------------------------------------------------------------- shop

_SHOP_PRODUCTS = _pool(
    "LAMP-02:Desk lamp:2499|MUG-01:Ceramic mug:899|CHAIR-07:Office chair:14900|DESK-04:Standing desk:38900"
    "|PEN-10:Gel pen pack:599|BAG-03:Laptop bag:4599|KEYB-05:Mechanical keyboard:8999"
)
_SHOP_REASONS_IN = _pool("supplier delivery|restock from the warehouse|returned by the courier")
_SHOP_REASONS_OUT = _pool("damaged in storage|broken during a display|water damage")
_SHOP_POLICY = "Before any stock change, state the SKU and the number of units and wait for the user's yes."


def _shop_world(rng: random.Random) -> State:
    products = []
    for item in rng.sample(_SHOP_PRODUCTS, 4):
        sku, name, price = item.split(":")
        cents = int(price) + rng.choice((-100, 0, 100))
        products.append({"sku": sku, "name": name, "price_cents": cents, "stock": rng.randint(4, 60)})
    return {"products": products, "opening_balance_cents": rng.randint(50, 500) * 100}


def _search(product: dict[str, Any]) -> Step:
    return "search_products", {"query": str(product["name"]).split()[-1].lower()}


def _adjust(rng: random.Random, product: dict[str, Any], *, write_off: bool) -> Step:
    delta, reasons = (-rng.randint(1, 3), _SHOP_REASONS_OUT) if write_off else (rng.randint(5, 40), _SHOP_REASONS_IN)
    return "adjust_stock", {"sku": product["sku"], "delta": delta, "reason": rng.choice(reasons)}


def _shop_reads(rng: random.Random, state: State) -> list[Step]:
    return [_search(rng.choice(state["products"])), ("get_balance", {})]


def _shop_transaction(rng: random.Random) -> _Draft:
    state = _shop_world(rng)
    product = rng.choice(state["products"])
    steps = [_search(product), _adjust(rng, product, write_off=rng.random() < 0.4)]
    prompt = f"Please {phrase(steps[0])} to check what we have, and then {phrase(steps[1])}."
    return _Draft(prompt, f"Update the stock of the {product['name']} ({product['sku']}).", state, steps)


def _shop_clarify(rng: random.Random) -> _Draft:
    state = _shop_world(rng)
    product = rng.choice(state["products"])
    step = _adjust(rng, product, write_off=False)
    if rng.random() < 0.5:
        details, ask = {"delta": str(step[1]["delta"])}, "ask me how many units came in"
    else:
        details, ask = {"sku": str(step[1]["sku"])}, f"it is our {product['name'].lower()}; ask me for its code"
    prompt = f"Please {phrase(step, omit=tuple(details))}; {ask}."
    goal = f"Add the new units of the {product['name']} to stock. Only when asked, {_reveal(details)}."
    return _Draft(prompt, goal, state, [step], details=details)


def _shop_policy(rng: random.Random) -> _Draft:
    state = _shop_world(rng)
    product = rng.choice(state["products"])
    goal = f"Write off broken units of the {product['name']}."
    return _confirmed(rng, state, _search(product), _adjust(rng, product, write_off=True), goal, _SHOP_POLICY)


# ---------------------------------------------------------------- entry point

_BUILDERS: dict[str, dict[RubricKind, Builder]] = {
    "filesystem": {
        "single_lookup": _lookup(_fs_world, _fs_reads),
        "multi_step_transaction": _fs_transaction,
        "error_recovery": _fs_recover,
        "clarification_needed": _fs_clarify,
        "policy_constrained": _fs_policy,
        "parallel_calls": _parallel(_fs_world, _fs_reads),
    },
    "calendar": {
        "single_lookup": _lookup(_cal_world, _cal_reads),
        "multi_step_transaction": _cal_transaction,
        "error_recovery": _cal_recover,
        "clarification_needed": _cal_clarify,
        "policy_constrained": _cal_policy,
        "parallel_calls": _parallel(_cal_world, _cal_reads),
    },
    "shop": {
        "single_lookup": _lookup(_shop_world, _shop_reads),
        "multi_step_transaction": _shop_transaction,
        "clarification_needed": _shop_clarify,
        "policy_constrained": _shop_policy,
        "parallel_calls": _parallel(_shop_world, _shop_reads),
    },
}
SCENARIO_KINDS: dict[str, tuple[RubricKind, ...]] = {
    sandbox: tuple(kind for kind in RUBRIC_KINDS if kind in builders) for sandbox, builders in _BUILDERS.items()
}


def make_scenario(sandbox: str, kind: RubricKind, rng: random.Random) -> Scenario:
    """A seeded scenario of `kind` for `sandbox`; an unsupported kind falls back to multi_step_transaction."""
    builders = _BUILDERS.get(sandbox)
    if builders is None:
        raise ValueError(f"no scenarios for sandbox {sandbox!r}; known: {', '.join(sorted(_BUILDERS))}")
    if kind not in RUBRIC_KINDS:
        raise ValueError(f"unknown rubric kind {kind!r}; known: {', '.join(RUBRIC_KINDS)}")
    built: RubricKind = kind if kind in builders else FALLBACK_KIND
    draft = builders[built](rng)
    actions = [
        ToolCall(id=k2_tool_call_id(name, index), function=FunctionCall(name=name, arguments=json.dumps(args)))
        for index, (name, args) in enumerate(draft.steps)
    ]
    tools = list(draft.tools if draft.tools is not None else [name for name, _ in draft.steps])
    return Scenario(
        sandbox, built, draft.prompt, draft.goal, dict(draft.details), draft.state, actions, tools, draft.policy
    )
