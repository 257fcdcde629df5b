"""The RL table: one Parquet row per judged trajectory, everything an RL trainer needs to roll the task
out again and score it.

| column          | holds |
|-----------------|-------|
| `task_id`, `trajectory_id` | ids in the run |
| `prompt`        | list of `{role, content}`: the agent's system prompt and the task's first user message |
| `tools`         | the OpenAI tools list, JSON text |
| `environment`   | JSON text: `{"initial_state": {...}, "sandbox": NAME or null, "expected_actions": [calls]}` |
| `rubric`        | JSON text of the task's rubric (kind, criteria, expected tools, checkpoints, threshold) |
| `reward`        | the judge's weighted score (0..1) |
| `accepted`      | whether the trajectory passed (rejected rows are exported with `--all`) |

For a sandbox task, `simulators.sandboxes.replay(SANDBOXES[sandbox], root, initial_state,
expected_actions)` rebuilds the gold end state on a fresh sandbox (its hash is what the judge compared).
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
        pa.field("prompt", pa.list_(_PROMPT_MESSAGE)),
        pa.field("tools", pa.string()),
        pa.field("environment", pa.string()),
        pa.field("rubric", pa.string()),
        pa.field("reward", pa.float64()),
        pa.field("accepted", pa.bool_()),
    ]
)


def rl_example(row: dict[str, Any]) -> dict[str, Any]:
    """One row of the file, from a row of the rl query (the `rl` view joined to tasks and agents)."""
    prompt = [{"role": "user", "content": row["prompt"] or ""}]
    if row.get("system_prompt"):
        prompt.insert(0, {"role": "system", "content": row["system_prompt"]})
    environment = {
        "initial_state": json.loads(row["environment"] or "{}"),
        "sandbox": row.get("sandbox"),
        "expected_actions": [_action(action) for action in row.get("expected_actions") or []],
    }
    return {
        "task_id": row["task_id"],
        "trajectory_id": row["trajectory_id"],
        "prompt": prompt,
        "tools": row["tools"] or "[]",
        "environment": json.dumps(environment, ensure_ascii=False, separators=(",", ":")),
        "rubric": row["rubric"],
        "reward": row["reward"],
        "accepted": row["accepted"],
    }


def _action(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {
        "id": call["id"],
        "type": call.get("type") or "function",
        "function": {"name": function["name"], "arguments": function.get("arguments") or "{}"},
    }
