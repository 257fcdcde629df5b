"""`synth compact`, `stats`, `export`, `query` and `report` over one million trajectory rows: time and peak RSS.

Builds a run folder of N trajectories (default 1,000,000) plus the agents, tasks, verdicts, tools and
failures the views join, in the store's schema and shard layout (as a run leaves it before its final
compaction), then runs each command as its own child process (`python -m synth ...`) and records its
wall time and peak RSS, the folder's size on disk and file counts, the output's size, and checks the
answers against what was generated. The order is what a user's run goes through: `synth compact`
(which `synth generate` runs at its end), then the read commands on the compacted run;
`--uncompacted` also measures the read commands before compaction.

    python bench/million_rows.py                              # 1M rows → printed table
    python bench/million_rows.py --rows 100000 --json bench/out/million-100k.json
    python bench/million_rows.py --keep --workdir /tmp/m1     # keep the run; a rerun with this --workdir reuses it

A kept run stays compacted: a rerun measures `synth compact` on it again (a no-op, reported as such)
and the read commands as before.

Each command's peak RSS comes from GNU time (/usr/bin/time), the one child it runs (see `measure`).

Rows are not made by the pipeline (a million rollouts would take days); `generate_run` writes them
straight from Arrow: a seeded set of template episodes (an agent with two tasks, their trajectories
and verdicts, made as the pipeline's own pydantic records and turned into Arrow by
`synth.store.schema.to_table`) is sampled shard by shard and given fresh ids, so every row is a
valid record and the content varies as much as the templates do. run.json, done-markers and the
shard files go through `synth.run_folder` and `synth.store`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synth.config import RunConfig, load_config
from synth.records import (
    RUBRIC_KINDS,
    AgentSpec,
    CheckResult,
    Criterion,
    CriterionScore,
    Failure,
    FunctionCall,
    Message,
    Persona,
    Record,
    RoleUsage,
    Rubric,
    RubricKind,
    StateChange,
    StopReason,
    Task,
    ToolCall,
    ToolSpec,
    Trajectory,
    Usage,
    Verdict,
)
from synth.run_folder import StageSummary, finish_run_info, prepare_run_folder, write_marker
from synth.store import SCHEMA_VERSION, schema_for, to_table, write_shard
from synth.store.parquet import write_table_shard

DEFAULT_ROWS = 1_000_000
TIME = "/usr/bin/time"  # GNU time: per-command peak RSS (see `measure`)
TEMPLATE_AGENTS = 1500  # 3,000 template episodes: a 50-row shard almost never holds the same one twice
TASKS_PER_AGENT = 2
POLICY_MODEL = "kimi-k2-0905-preview"
JUDGE_MODEL = "kimi-k2-judge"
# Acceptance differs per rubric kind (as in real runs); ~0.8 overall.
ACCEPT_RATE: dict[str, float] = {
    "single_lookup": 0.92,
    "multi_step_transaction": 0.78,
    "error_recovery": 0.70,
    "clarification_needed": 0.80,
    "policy_constrained": 0.75,
    "parallel_calls": 0.85,
}
TASK_FAILURE_RATE = 0.015  # slots whose task could not be made: a failure row, no task
ROLLOUT_FAILURE_RATE = 0.01  # tasks whose rollout failed: a task row and a failure row, no trajectory

_WORD_TEXT = """
account address after again agent amount answer appointment archive available balance before billing
book booking branch budget calendar cancel card cart change charge check city client close code
confirm contact copy cost create currency customer date day deadline delete delivery department
deposit detail device discount document download draft due email employee end error estimate event
expense export file filter find flight folder form forward fund goal group guest history hotel
invoice issue item join key label language last late leave limit list location log manager meeting
member message method month move name network next note notice number offer office open order owner
package page paid partner password payment pending period phone plan policy price print priority
product profile project quantity quote rate receipt record refund region reminder report request
reservation resource result return review room route schedule search seat send server service
session share shipment size slot source start status stock store summary supplier support table
team ticket time title total track transfer trip type update upload user vendor version warehouse
week window work year yesterday today tomorrow please could would should maybe also then still only
"""
_WORDS = tuple(_WORD_TEXT.split())
_DOMAINS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("travel", "flights", ("flight", "seat", "booking", "fare")),
    ("travel", "hotels", ("hotel", "room", "reservation", "guest")),
    ("finance", "banking", ("account", "transfer", "balance", "card")),
    ("finance", "invoicing", ("invoice", "payment", "client", "receipt")),
    ("commerce", "orders", ("order", "shipment", "refund", "cart")),
    ("commerce", "inventory", ("product", "stock", "warehouse", "supplier")),
    ("productivity", "calendar", ("event", "meeting", "reminder", "slot")),
    ("productivity", "files", ("file", "folder", "document", "share")),
    ("support", "helpdesk", ("ticket", "issue", "agent", "priority")),
    ("hr", "leave", ("employee", "leave", "request", "policy")),
    ("health", "clinic", ("appointment", "patient", "doctor", "prescription")),
    ("devops", "deploys", ("service", "deploy", "log", "incident")),
    ("education", "courses", ("course", "student", "grade", "assignment")),
    ("realestate", "listings", ("listing", "viewing", "offer", "agent")),
    ("logistics", "fleet", ("vehicle", "route", "driver", "delivery")),
    ("media", "music", ("track", "playlist", "artist", "album")),
)
_VERBS = ("get", "list", "search", "create", "update", "cancel", "send", "check")
_SANDBOXES = ("filesystem", "calendar", "shop")
_STOPS: tuple[StopReason, ...] = ("user_stop",) * 14 + ("max_turns", "max_tool_calls", "length", "model_error")


# ---------------------------------------------------------------- template episodes


class _Text:
    """Seeded English-ish text of the lengths and shapes a run's conversations have."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def sentence(self, low: int, high: int) -> str:
        words = self.rng.choices(_WORDS, k=self.rng.randint(low, high))
        return " ".join(words).capitalize() + self.rng.choice(".?.!.")

    def paragraph(self, sentences: int, low: int = 6, high: int = 22) -> str:
        return " ".join(self.sentence(low, high) for _ in range(sentences))

    def identifier(self, noun: str) -> str:
        return f"{noun[:3].upper()}-{self.rng.randint(10000, 99999)}"

    def value(self, noun: str) -> Any:
        kind = self.rng.randrange(4)
        if kind == 0:
            return self.identifier(noun)
        if kind == 1:
            return round(self.rng.uniform(1, 5000), 2)
        if kind == 2:
            day = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=self.rng.randrange(365))
            return day.date().isoformat()
        return self.sentence(2, 6)


def _tools(rng: random.Random) -> list[ToolSpec]:
    """The tools stage's output: six tools per domain, with JSON-schema parameters."""
    text = _Text(rng)
    tools: list[ToolSpec] = []
    for category, domain, nouns in _DOMAINS:
        for verb, noun in rng.sample([(v, n) for v in _VERBS for n in nouns], 6):
            props = {
                f"{noun}_id" if i == 0 else rng.choice(_WORDS): {
                    "type": rng.choice(("string", "string", "integer", "number")),
                    "description": text.sentence(5, 14),
                }
                for i in range(rng.randint(2, 5))
            }
            name = f"{verb}_{noun}"
            tools.append(
                ToolSpec(
                    id=f"tool-{rng.getrandbits(64):016x}",
                    name=name,
                    description=text.paragraph(2),
                    parameters={"type": "object", "properties": props, "required": list(props)[:1]},
                    returns={"type": "object", "properties": {"status": {"type": "string"}}},
                    effect="write" if verb in ("create", "update", "cancel", "send") else "read",
                    failure_modes=[text.sentence(3, 8) for _ in range(rng.randint(0, 2))],
                    category=category,
                    domain=domain,
                )
            )
    return tools


@dataclass
class _Episode:
    task: Task
    trajectory: Trajectory
    verdict: Verdict


def _call(rng: random.Random, text: _Text, tool: ToolSpec, index: int) -> ToolCall:
    properties: dict[str, Any] = tool.parameters["properties"]
    arguments = {name: text.value(name) for name in rng.sample(list(properties), rng.randint(1, len(properties)))}
    return ToolCall(
        id=f"functions.{tool.name}:{index}",
        function=FunctionCall(name=tool.name, arguments=json.dumps(arguments)),
    )


def _result(rng: random.Random, text: _Text, call: ToolCall) -> str:
    noun = call.function.name.split("_", 1)[1]
    if rng.random() < 0.08:
        return json.dumps({"error": text.sentence(4, 10), "code": rng.choice((400, 404, 409, 500))})
    items = [
        {"id": text.identifier(noun), "name": text.sentence(2, 5), "status": rng.choice(("open", "done", "pending"))}
        | {rng.choice(_WORDS): text.value(noun) for _ in range(rng.randint(1, 4))}
        for _ in range(rng.randint(1, 4))
    ]
    return json.dumps({"status": "ok", "items": items})


def _episode(
    rng: random.Random, agent: AgentSpec, tools: list[ToolSpec], kind: RubricKind, started: datetime
) -> _Episode:
    """One task with its trajectory (6–12 messages with tool calls) and verdict."""
    text = _Text(rng)
    task_id, trajectory_id = f"task-{rng.getrandbits(64):016x}", f"traj-{rng.getrandbits(64):016x}"
    prompt = text.paragraph(rng.randint(1, 3))
    messages = [Message(role="system", content=agent.system_prompt), Message(role="user", content=prompt)]
    trace: list[StateChange] = []
    target = rng.randint(6, 12)
    calls_made = 0

    # Rounds of assistant calls → tool results, sometimes a user follow-up, until the target length.
    def room() -> int:  # messages still to place before the final answer
        return target - 1 - len(messages)

    while room() >= 2:  # an assistant turn and at least one tool result
        parallel = rng.randint(2, 3) if kind == "parallel_calls" else rng.choice((1, 1, 1, 2))
        parallel = min(parallel, room() - 1)
        calls = [_call(rng, text, rng.choice(tools), calls_made + i) for i in range(parallel)]
        calls_made += parallel
        thinking = text.paragraph(rng.randint(1, 3)) if rng.random() < 0.5 else None
        spoken = text.sentence(5, 15) if rng.random() < 0.3 else None
        messages.append(Message(role="assistant", content=spoken, reasoning_content=thinking, tool_calls=calls))
        for call in calls:
            result = _result(rng, text, call)
            messages.append(Message(role="tool", content=result, tool_call_id=call.id, name=call.function.name))
            trace.append(
                StateChange(
                    step=len(trace),
                    tool_call_id=call.id,
                    tool_name=call.function.name,
                    ok='"error"' not in result,
                    state_patch={call.function.name: json.loads(call.function.arguments)},
                )
            )
        if room() >= 2 and rng.random() < 0.3:
            messages.append(Message(role="assistant", content=text.paragraph(1)))
            messages.append(Message(role="user", content=text.paragraph(1)))
    if room() == 1:  # the user adds a detail before the answer
        messages.append(Message(role="user", content=text.paragraph(1)))
    messages.append(Message(role="assistant", content=text.paragraph(rng.randint(2, 5))))
    accepted = rng.random() < ACCEPT_RATE[kind]
    criteria = [Criterion(name=f"c{i}_{rng.choice(_WORDS)}", description=text.sentence(6, 14)) for i in range(3)]
    expected = [call for message in messages for call in message.tool_calls][:4]
    task = Task(
        id=task_id,
        agent_id=agent.id,
        prompt=prompt,
        user_goal=text.paragraph(2),
        user_details={word: text.value(word) for word in rng.sample(_WORDS, rng.randint(1, 4))},
        persona=Persona(name=text.sentence(1, 2).rstrip(".?!"), style=rng.choice(("concise", "chatty", "formal"))),
        difficulty=rng.choice(("easy", "medium", "hard")),
        rubric=Rubric(
            kind=kind,
            criteria=criteria,
            expected_tools=sorted({call.function.name for call in expected}),
            checkpoints=[text.sentence(3, 8) for _ in range(rng.randint(1, 3))],
        ),
        initial_state={"records": [text.value(w) for w in rng.sample(_WORDS, 3)]} if agent.sandbox else {},
        expected_actions=expected,
    )
    tokens = sum(len(m.content or "") + len(m.reasoning_content or "") for m in messages) // 4
    usage = [
        RoleUsage(
            role="policy",
            model=POLICY_MODEL,
            usage=Usage(calls=calls_made + 1, prompt_tokens=tokens * 3, completion_tokens=tokens // 3),
        ),
        RoleUsage(role="user", model=POLICY_MODEL, usage=Usage(calls=1, prompt_tokens=tokens, completion_tokens=60)),
        RoleUsage(
            role="tool",
            model=POLICY_MODEL,
            usage=Usage(calls=calls_made, prompt_tokens=400 * calls_made, completion_tokens=120 * calls_made),
        ),
    ]
    finished = started + timedelta(seconds=rng.uniform(5, 90))
    trajectory = Trajectory(
        id=trajectory_id,
        task_id=task_id,
        agent_id=agent.id,
        messages=messages,
        tools=tools,
        state_trace=trace,
        stop_reason=rng.choice(_STOPS),
        usage=usage,
        models={"policy": POLICY_MODEL, "user": POLICY_MODEL, "tool": POLICY_MODEL},
        seed=rng.getrandbits(31),
        started_at=started,
        finished_at=finished,
        errors=[text.sentence(4, 9)] if rng.random() < 0.05 else [],
        end_state_hash=f"{rng.getrandbits(64):016x}" if agent.sandbox else None,
        expected_state_hash=f"{rng.getrandbits(64):016x}" if agent.sandbox else None,
    )
    scores = [
        CriterionScore(
            name=c.name,
            score=round(rng.uniform(0.7, 1) if accepted else rng.uniform(0, 0.8), 3),
            rationale=text.sentence(8, 20),
        )
        for c in criteria
    ]
    checks = [
        CheckResult(name=n, passed=accepted or rng.random() < 0.6, detail=text.sentence(3, 8))
        for n in ("tools_valid", "expected_tools_called", "end_state")[: rng.randint(2, 3)]
    ]
    verdict = Verdict(
        trajectory_id=trajectory_id,
        task_id=task_id,
        rubric_kind=kind,
        checks=checks,
        scores=scores,
        score=round(sum(s.score for s in scores) / len(scores), 4),
        accepted=accepted,
        reasons=[] if accepted else [text.sentence(6, 16)],
        judge_model=JUDGE_MODEL,
        judge_usage=Usage(calls=1, prompt_tokens=tokens + 800, completion_tokens=250),
    )
    return _Episode(task, trajectory, verdict)


@dataclass(frozen=True)
class Templates:
    """Template rows as Arrow tables in the store's schema: agent u owns episodes 2u and 2u+1."""

    tools: list[ToolSpec]
    agents: pa.Table
    tasks: pa.Table
    trajectories: pa.Table
    verdicts: pa.Table
    accepted: np.ndarray  # per episode
    kinds: list[str]  # per episode
    tokens: np.ndarray  # per episode: policy+user+tool prompt and completion tokens, judge's


def make_templates(seed: int, agents: int = TEMPLATE_AGENTS) -> Templates:
    rng = random.Random(seed)
    tools = _tools(rng)
    text = _Text(rng)
    by_domain: dict[str, list[ToolSpec]] = {}
    for tool in tools:
        by_domain.setdefault(tool.domain, []).append(tool)
    agent_rows: list[Record] = []
    episodes: list[_Episode] = []
    started = datetime(2026, 11, 1, tzinfo=UTC)
    for index in range(agents):
        domain = rng.choice(list(by_domain))
        toolset = rng.sample(by_domain[domain], rng.randint(3, 6))
        agent = AgentSpec(
            id=f"agent-{rng.getrandbits(64):016x}",
            name=f"{domain}_{rng.choice(_WORDS)}_assistant",
            system_prompt=f"You are the {domain} assistant. " + text.paragraph(rng.randint(3, 7)),
            tool_ids=[tool.id for tool in toolset],
            category=toolset[0].category,
            domain=domain,
            policy=text.sentence(6, 14) if rng.random() < 0.4 else "",
            sandbox=rng.choice(_SANDBOXES) if rng.random() < 0.15 else None,
        )
        agent_rows.append(agent)
        for _ in range(TASKS_PER_AGENT):
            kind = rng.choice(RUBRIC_KINDS)
            episodes.append(_episode(rng, agent, toolset, kind, started + timedelta(seconds=index)))

    def usage_of(episode: _Episode) -> list[int]:
        roles = [u.usage for u in episode.trajectory.usage] + [episode.verdict.judge_usage]
        return [
            sum(u.prompt_tokens for u in roles[:-1]),
            sum(u.completion_tokens for u in roles[:-1]),
            roles[-1].prompt_tokens,
            roles[-1].completion_tokens,
        ]

    return Templates(
        tools=tools,
        agents=to_table(agent_rows, "agents"),
        tasks=to_table([e.task for e in episodes], "tasks"),
        trajectories=to_table([e.trajectory for e in episodes], "trajectories"),
        verdicts=to_table([e.verdict for e in episodes], "verdicts"),
        accepted=np.array([e.verdict.accepted for e in episodes]),
        kinds=[e.verdict.rubric_kind for e in episodes],
        tokens=np.array([usage_of(e) for e in episodes], dtype=np.int64),
    )


# ---------------------------------------------------------------- the run folder


@dataclass
class Generated:
    """What `generate_run` wrote: the figures `synth stats` must give back."""

    run_dir: Path
    shards: int = 0
    tools: int = 0
    agents: int = 0
    tasks: int = 0
    trajectories: int = 0
    accepted: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    accepted_by_kind: Counter[str] = field(default_factory=Counter)
    tasks_by_kind: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return self.trajectories - self.accepted

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs.
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {"run_dir": str(self.run_dir)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generated:
        counters = {name: Counter(data[name]) for name in ("failures", "accepted_by_kind", "tasks_by_kind")}
        return cls(**{**data, **counters, "run_dir": Path(data["run_dir"])})

    def expected_stats(self) -> dict[str, Any]:
        """The part of `synth stats --json` this run determines."""
        return {
            "tools": self.tools,
            "agents": self.agents,
            "tasks": self.tasks,
            "trajectories": self.trajectories,
            "judged": self.trajectories,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failures": dict(sorted(self.failures.items())),
            "unaccounted_tasks": 0,
            "accepted_by_kind": dict(sorted(self.accepted_by_kind.items())),
            "tasks_by_kind": dict(sorted(self.tasks_by_kind.items())),
        }


def _fresh_ids(rng: np.random.Generator, prefix: str, count: int) -> np.ndarray:
    # Random 64-bit hex, like the pipeline's content ids (a counter would compress unrealistically well).
    return np.array([f"{prefix}{value:016x}" for value in rng.integers(0, 2**63, count, dtype=np.int64)], dtype=object)


def _replace(table: pa.Table, **columns: np.ndarray) -> pa.Table:
    """`table` with these columns' values replaced; the fields (type, nullability) stay the schema's."""
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(values, type=field.type))
    return table


def _write(run_dir: Path, table: str, shard: str, data: pa.Table) -> None:
    """One shard of rows that are already Arrow, checked against the store's schema first."""
    if data.num_rows == 0:
        return
    if not data.schema.equals(schema_for(table), check_metadata=True):
        raise AssertionError(f"{table}: generated rows drift from the store's schema")
    write_table_shard(run_dir, table, shard, data)


def generate_run(
    run_dir: Path,
    rows: int,
    *,
    seed: int = 7,
    shard_size: int | None = None,
    template_agents: int = TEMPLATE_AGENTS,
    say: Any = None,
) -> Generated:
    """Write a run folder of `rows` trajectories to `run_dir` (which must be new or empty); fewer
    `template_agents` make it quicker to start (tests) and the content more repetitive."""
    started = time.perf_counter()
    shard_size = shard_size or RunConfig().shard_size
    if shard_size % TASKS_PER_AGENT:
        raise ValueError(f"--shard-size must be a multiple of {TASKS_PER_AGENT} (an agent's tasks share a shard)")
    config = load_config(None, {}, {"run.tasks": rows, "run.seed": seed, "run.shard_size": shard_size})
    run_dir = prepare_run_folder(run_dir, config)
    templates = make_templates(seed, template_agents)
    out = Generated(run_dir)
    write_shard(run_dir, "tools", "00000", templates.tools)
    write_marker(run_dir, StageSummary(name="tools", seconds=1.0))
    out.tools = len(templates.tools)
    rng = np.random.default_rng(seed)
    template_agents = templates.agents.num_rows
    spent = np.zeros(4, dtype=np.int64)
    at = datetime(2026, 11, 29, tzinfo=UTC)
    for index, first in enumerate(range(0, rows, shard_size)):
        size = min(shard_size, rows - first)
        name = f"{index:05d}"
        units = rng.integers(0, template_agents, -(-size // TASKS_PER_AGENT))
        episodes = (units[:, None] * TASKS_PER_AGENT + np.arange(TASKS_PER_AGENT)).ravel()[:size]
        agent_ids = _fresh_ids(rng, "agent-", len(units))
        episode_agent = agent_ids[np.arange(size) // TASKS_PER_AGENT]
        task_ids, trajectory_ids = _fresh_ids(rng, "task-", size), _fresh_ids(rng, "traj-", size)
        # Rollout failures: extra tasks (of this shard's agents) that have no trajectory.
        lost = int(rng.binomial(size, ROLLOUT_FAILURE_RATE))
        lost_episodes = rng.choice(episodes, lost)
        lost_ids = _fresh_ids(rng, "task-", lost)
        lost_agents = episode_agent[rng.integers(0, size, lost)]
        tasks = pa.concat_tables(
            [
                _replace(templates.tasks.take(episodes), id=task_ids, agent_id=episode_agent),
                _replace(templates.tasks.take(lost_episodes), id=lost_ids, agent_id=lost_agents),
            ]
        )
        unmade = int(rng.binomial(size, TASK_FAILURE_RATE))
        failures = [
            Failure(
                id=f"fail-{rng.integers(0, 2**63):016x}",
                stage="rollout",
                item_id=str(task),
                at=at,
                reason="ModelCallError: policy: HTTP 500 after 5 attempts",
            )
            for task in lost_ids
        ] + [
            Failure(
                id=f"fail-{rng.integers(0, 2**63):016x}",
                stage="tasks",
                item_id=f"{name}:{slot}",
                at=at,
                reason="task draft failed validation: rubric.expected_tools names a tool not offered",
            )
            for slot in range(unmade)
        ]
        tables = {
            "agents": _replace(templates.agents.take(units), id=agent_ids),
            "tasks": tasks,
            "trajectories": _replace(
                templates.trajectories.take(episodes), id=trajectory_ids, task_id=task_ids, agent_id=episode_agent
            ),
            "failures": to_table(failures, "failures"),
            "verdicts": _replace(templates.verdicts.take(episodes), trajectory_id=trajectory_ids, task_id=task_ids),
        }
        for table, data in tables.items():  # the order a shard writes them in (verdicts last)
            _write(run_dir, table, name, data)
        accepted = templates.accepted[episodes]
        tokens = templates.tokens[episodes].sum(axis=0)
        spent += tokens
        write_marker(run_dir, _summary(name, size + lost, size, int(accepted.sum()), len(failures), tokens))
        out.shards += 1
        out.agents += len(units)
        out.tasks += size + lost
        out.trajectories += size
        out.accepted += int(accepted.sum())
        out.failures.update(f.stage for f in failures)
        out.accepted_by_kind.update(templates.kinds[e] for e, ok in zip(episodes, accepted, strict=True) if ok)
        out.tasks_by_kind.update(templates.kinds[e] for e in [*episodes, *lost_episodes])
        if say is not None and index % 500 == 0:
            say(f"  {first + size:,} / {rows:,} rows")
    total = _summary("run", 0, 0, 0, 0, spent)
    finish_run_info(
        run_dir,
        {"policy": total.usage["policy"], "judge": total.usage["judge"]},
        {"policy": POLICY_MODEL, "judge": JUDGE_MODEL},
    )
    out.seconds = time.perf_counter() - started
    return out


def _summary(
    name: str, tasks: int, trajectories: int, accepted: int, failures: int, tokens: np.ndarray
) -> StageSummary:
    # Prices per million tokens (K2-like); what matters here is that the bill adds up over markers.
    policy = Usage(
        calls=trajectories * 6,
        prompt_tokens=int(tokens[0]),
        completion_tokens=int(tokens[1]),
        cost_usd=round(int(tokens[0]) * 0.6e-6 + int(tokens[1]) * 2.5e-6, 6),
    )
    judge = Usage(
        calls=trajectories,
        prompt_tokens=int(tokens[2]),
        completion_tokens=int(tokens[3]),
        cost_usd=round(int(tokens[2]) * 0.6e-6 + int(tokens[3]) * 2.5e-6, 6),
    )
    return StageSummary(
        name=name,
        tasks=tasks,
        trajectories=trajectories,
        accepted=accepted,
        failures=failures,
        usage={"policy": policy, "judge": judge},
        models={"policy": POLICY_MODEL, "judge": JUDGE_MODEL},
        seconds=float(trajectories),
    )


# ---------------------------------------------------------------- measuring the commands


@dataclass(frozen=True)
class Measured:
    command: str
    argv: list[str]
    seconds: float
    peak_rss_mb: float
    stdout: str


def measure(name: str, args: Sequence[str], cwd: Path) -> Measured:
    """Run `python -m synth ARGS` under GNU time, which reports that one child's peak RSS.

    Neither RUSAGE_CHILDREN (a running maximum over every child) nor wait4 on a direct child will
    do: Linux keeps a forked child's high-water mark across exec, so a child of this process (which
    holds the templates) would report at least this process's own RSS. time's fork is small."""
    argv = [sys.executable, "-m", "synth", *args]
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "time.txt"
        started = time.perf_counter()
        done = subprocess.run(
            [TIME, "-f", "%M", "-o", str(report), *argv], cwd=cwd, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}")
        peak_kib = int(report.read_text().split()[-1])  # %M: maximum resident set size in KiB
    return Measured(name, list(args), round(seconds, 2), round(peak_kib / 1024, 1), done.stdout)


def folder_files(path: Path) -> dict[str, int]:
    """Files per top-level entry of the run folder (tables, markers, manifests, run.json)."""
    counts: Counter[str] = Counter()
    for root, _, files in os.walk(path):
        top = Path(root).relative_to(path).parts[:1]
        for name in files:
            counts[top[0] if top else name] += 1
    return dict(sorted(counts.items()))


def folder_bytes(path: Path) -> dict[str, int]:
    """Bytes on disk per top-level entry of the run folder (tables, markers, run.json)."""
    sizes: Counter[str] = Counter()
    for root, _, files in os.walk(path):
        top = Path(root).relative_to(path).parts[:1]
        for name in files:
            sizes[top[0] if top else name] += (Path(root) / name).stat().st_size
    return dict(sorted(sizes.items()))


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 24):
            lines += chunk.count(b"\n")
    return lines


def check_stats(generated: Generated, figures: dict[str, Any]) -> dict[str, Any]:
    """`synth stats --json` reduced to the figures `Generated.expected_stats` predicts."""
    kinds = figures["by_rubric_kind"]
    return {
        **{key: figures[key] for key in ("tools", "agents", "tasks", "trajectories", "judged", "accepted", "rejected")},
        "failures": dict(sorted(figures["failures"].items())),
        "unaccounted_tasks": figures["unaccounted_tasks"],
        "accepted_by_kind": {k["kind"]: k["accepted"] for k in kinds if k["accepted"]},
        "tasks_by_kind": {k["kind"]: k["tasks"] for k in kinds},
    }


AGGREGATE_SQL = (
    "SELECT rubric_kind, count(*) AS rows, round(avg(score), 4) AS mean_score, "
    "round(avg(message_count), 2) AS mean_messages FROM sft GROUP BY rubric_kind ORDER BY rubric_kind"
)
# The same aggregate counting the messages from the list itself: DuckDB decodes every message to do
# it (the stored count exists for this); measured beside it, with no target of its own.
DECODING_AGGREGATE_SQL = AGGREGATE_SQL.replace("avg(message_count)", "avg(len(messages))")


# The targets at 1M rows (2 cores): seconds at most, or rows/s at least; peak RSS for all.
TARGET_SECONDS = {"stats --json": 3.0, "query (agg)": 2.0, "report": 10.0}
TARGET_ROWS_PER_S = {"export openai": 50_000, "export hf": 50_000}
TARGET_PEAK_RSS_MB = 1024.0


def verdict(row: dict[str, Any]) -> str:
    """'met' / 'missed' against the issue's target for this command ('' when it has none)."""
    name = row["command"].removesuffix(" [uncompacted]")
    ok = row["peak_rss_mb"] < TARGET_PEAK_RSS_MB
    if name in TARGET_SECONDS:
        ok = ok and row["seconds"] < TARGET_SECONDS[name]
    elif name in TARGET_ROWS_PER_S:
        ok = ok and (row["rows_per_s"] or 0) >= TARGET_ROWS_PER_S[name]
    elif name != "compact":
        return ""
    return "met" if ok else "missed"


Recorder = Callable[[Measured, int, Path | None], None]


def _recorder(rows: list[dict[str, Any]], suffix: str) -> Recorder:
    def record(measured: Measured, processed: int, output: Path | None = None) -> None:
        row = {
            "command": measured.command + suffix,
            "argv": ["synth", *measured.argv],
            "seconds": measured.seconds,
            "peak_rss_mb": measured.peak_rss_mb,
            "rows": processed,
            "rows_per_s": round(processed / measured.seconds) if measured.seconds else None,
            "output_bytes": output.stat().st_size if output is not None else None,
        }
        row["target"] = verdict(row)
        rows.append(row)
        print(
            f"  {row['command']:<28} {measured.seconds:>8.1f} s {measured.peak_rss_mb:>9.1f} MB  {row['target']}",
            flush=True,
        )

    return record


def compact(generated: Generated, workdir: Path) -> dict[str, Any]:
    """`synth compact RUN`, measured, with the folder's file counts before and after."""
    before = folder_files(generated.run_dir)
    measured = measure("compact", ["compact", str(generated.run_dir)], workdir)
    after = folder_files(generated.run_dir)
    if after == before:
        print("  compact: nothing to do (the kept run was compacted by an earlier run of this bench)", flush=True)
    else:
        print(
            f"  compact {measured.seconds:>8.1f} s {measured.peak_rss_mb:>9.1f} MB  "
            f"files {sum(before.values()):,} -> {sum(after.values()):,}",
            flush=True,
        )
    return {
        "seconds": measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
        "files_before": before,
        "files_after": after,
        "files_before_total": sum(before.values()),
        "files_after_total": sum(after.values()),
        "was_already_compacted": after == before,
        "stdout": measured.stdout[-2000:],
    }


def bench(generated: Generated, workdir: Path, suffix: str = "") -> list[dict[str, Any]]:
    """Each read command once, measured; raises if an answer disagrees with what was generated."""
    run = str(generated.run_dir)
    rows: list[dict[str, Any]] = []
    record = _recorder(rows, suffix)

    stats = measure("stats --json", ["stats", run, "--json"], workdir)
    got, want = check_stats(generated, json.loads(stats.stdout)), generated.expected_stats()
    if got != want:
        raise AssertionError(f"synth stats disagrees with the generated run:\n got  {got}\n want {want}")
    record(stats, generated.trajectories, None)

    jsonl = workdir / "sft.jsonl"
    openai = measure("export openai", ["export", run, "--format", "openai", "--to", str(jsonl), "--force"], workdir)
    if (lines := count_lines(jsonl)) != generated.accepted:
        raise AssertionError(f"openai export wrote {lines} lines for {generated.accepted} accepted rows")
    with jsonl.open(encoding="utf-8") as file:
        first = json.loads(file.readline())
    if not (6 <= len(first["messages"]) <= 12 and first["tools"] and first["parallel_tool_calls"]):
        raise AssertionError(f"openai export's first line is not a tool-use conversation: {str(first)[:300]}")
    record(openai, generated.accepted, jsonl)
    jsonl.unlink()  # several GB at 1M rows: do not keep two exports on disk at once

    parquet = workdir / "sft.parquet"
    hf = measure("export hf", ["export", run, "--format", "hf", "--to", str(parquet), "--force"], workdir)
    if (count := pq.read_metadata(parquet).num_rows) != generated.accepted:
        raise AssertionError(f"hf export holds {count} rows for {generated.accepted} accepted rows")
    record(hf, generated.accepted, parquet)
    parquet.unlink()

    query = measure("query (agg)", ["query", run, AGGREGATE_SQL, "--format", "json"], workdir)
    answer = json.loads(query.stdout)
    by_kind = {row["rubric_kind"]: row["rows"] for row in answer}
    if by_kind != dict(sorted(generated.accepted_by_kind.items())):
        raise AssertionError(f"synth query counted {by_kind}, generated {dict(generated.accepted_by_kind)}")
    record(query, generated.trajectories, None)
    decoding = measure(
        "query (agg, len(messages))", ["query", run, DECODING_AGGREGATE_SQL, "--format", "json"], workdir
    )
    if json.loads(decoding.stdout) != answer:
        raise AssertionError("the stored message_count and len(messages) give different aggregates")
    record(decoding, generated.trajectories, None)

    html = workdir / "report.html"
    report = measure("report", ["report", run, "--to", str(html)], workdir)
    page = html.read_text(encoding="utf-8")
    if f"{generated.trajectories:,}" not in page:
        raise AssertionError(f"synth report does not show the run's {generated.trajectories:,} trajectories")
    record(report, generated.trajectories, html)
    html.unlink()
    return rows


def _generated(workdir: Path, rows: int, seed: int, shard_size: int) -> Generated:
    """The run in `workdir`: reused when a kept one was made with the same arguments and schema
    version (an older run lacks the newer stored columns, so its figures would not be this synth's),
    else built."""
    key = {"rows": rows, "seed": seed, "shard_size": shard_size, "schema_version": SCHEMA_VERSION}
    saved = workdir / "generated.json"
    if saved.is_file() and (kept := json.loads(saved.read_text()))["key"] == key:
        print(f"reusing the {rows:,}-row run in {workdir / 'run'}", flush=True)
        return Generated.from_json(kept["generated"])
    shutil.rmtree(workdir / "run", ignore_errors=True)
    print(f"generating {rows:,} trajectory rows in {workdir / 'run'} ...", flush=True)
    generated = generate_run(workdir / "run", rows, seed=seed, shard_size=shard_size, say=print)
    saved.write_text(json.dumps({"key": key, "generated": generated.to_json()}))
    return generated


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="trajectory rows (default 1,000,000)")
    parser.add_argument("--shard-size", type=int, default=None, help="rows per shard (default: the config's)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder; a rerun with the same --workdir reuses its run"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (e.g. bench/out/...)")
    parser.add_argument(
        "--uncompacted", action="store_true", help="also measure the read commands before `synth compact`"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="synth-million-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        generated = _generated(workdir, args.rows, args.seed, args.shard_size or RunConfig().shard_size)
        sizes = folder_bytes(generated.run_dir)
        print(
            f"  {generated.shards:,} shards, {generated.accepted:,} accepted, {sum(sizes.values()) / 1e6:,.1f} MB "
            f"on disk, built in {generated.seconds:.0f} s",
            flush=True,
        )
        rows = bench(generated, workdir, " [uncompacted]") if args.uncompacted else []
        compaction = compact(generated, workdir)
        rows += bench(generated, workdir)
        result = {
            "rows": args.rows,
            "shard_size": args.shard_size or RunConfig().shard_size,
            "seed": args.seed,
            "shards": generated.shards,
            "generated": {**generated.expected_stats(), "seconds": round(generated.seconds, 1)},
            "folder_bytes": sizes,
            "folder_bytes_total": sum(sizes.values()),
            "compaction": compaction,
            "folder_bytes_compacted_total": sum(folder_bytes(generated.run_dir).values()),
            "commands": rows,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["commands"], indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
