"""The RL table: one Parquet row per judged trajectory, everything a trainer needs to roll the task
out again and score it (the `rl` view's columns, see `synth.store.rl_view`).

| column          | holds |
|-----------------|-------|
| `task_id`, `trajectory_id`, `agent_id`, `agent_name` | ids in the run, the agent's name |
| `prompt`        | list of `{role, content}`: the agent's system prompt and the task's first user message |
| `tools`         | the OpenAI tools list, JSON text |
| `tool_specs`, `toolset_id` | the full tool specs (JSON text) and the id of that tool set |
| `environment`   | JSON text: `{"initial_state": {...}, "sandbox": NAME or null, "expected_actions": [calls]}` |
| `sandbox`, `initial_state`, `expected_actions` | the same, as columns of their own (JSON text) |
| `persona`, `user_goal`, `user_details` | the simulated user: persona (JSON), hidden goal and details (JSON) |
| `rubric`        | JSON text of the task's rubric (kind, criteria, expected tools, checkpoints, threshold) |
| `run_seed`, `settings` | the seed tool outcomes and user/judge calls derive from; limits and rates (JSON) |
| `score`         | the judge's weighted score (0..1) |
| `reward`        | `score` scaled by the share of objective checks passed; equals `score` when accepted |
| `accepted`      | whether the trajectory passed (rejected rows are exported with `--all`) |

`synth.envs.EpisodeSpec.from_rl_row(row)` rebuilds the episode from a row of this file; stepping it
with the recorded assistant turns reproduces the recorded reward.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

_PROMPT_MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
RL_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string()),
        pa.field("trajectory_id", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("agent_name", pa.string()),
        pa.field("prompt", pa.list_(_PROMPT_MESSAGE)),
        pa.field("tools", pa.string()),
        pa.field("tool_specs", pa.string()),
        pa.field("toolset_id", pa.string()),
        pa.field("environment", pa.string()),
        pa.field("sandbox", pa.string()),
        pa.field("initial_state", pa.string()),
        pa.field("expected_actions", pa.string()),
        pa.field("persona", pa.string()),
        pa.field("user_goal", pa.string()),
        pa.field("user_details", pa.string()),
        pa.field("difficulty", pa.string()),
        pa.field("rubric", pa.string()),
        pa.field("run_seed", pa.int64()),
        pa.field("settings", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("reward", pa.float64()),
        pa.field("accepted", pa.bool_()),
    ]
)


def rl_example(row: dict[str, Any]) -> dict[str, Any]:
    """One row of the file, from a row of the `rl` view."""
    environment = {
        "initial_state": json.loads(row["initial_state"] or "{}"),
        "sandbox": row.get("sandbox"),
        "expected_actions": json.loads(row["expected_actions"] or "[]"),
    }
    return {
        "task_id": row["task_id"],
        "trajectory_id": row["trajectory_id"],
        "agent_id": row["agent_id"],
        "agent_name": row["agent_name"],
        "prompt": prompt_messages(row),
        "tools": row["tools"] or "[]",
        "tool_specs": row["tool_specs"],
        "toolset_id": row["toolset_id"],
        "environment": json.dumps(environment, ensure_ascii=False, separators=(",", ":")),
        "sandbox": row.get("sandbox"),
        "initial_state": row["initial_state"],
        "expected_actions": row["expected_actions"],
        "persona": row["persona"],
        "user_goal": row["user_goal"],
        "user_details": row["user_details"],
        "difficulty": row["difficulty"],
        "rubric": row["rubric"],
        "run_seed": row["run_seed"],
        "settings": row["settings"],
        "score": row["score"],
        "reward": row["reward"],
        "accepted": row["accepted"],
    }


def prompt_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The opening messages: the agent's system prompt (when it has one) and the task's first user turn."""
    prompt = [{"role": "user", "content": row["prompt"] or ""}]
    if row.get("system_prompt"):
        prompt.insert(0, {"role": "system", "content": row["system_prompt"]})
    return prompt
