"""Rows for RL trainers, one JSON object a line, each carrying its episode (`synth_episode`: what
`synth.envs` needs to step it again) in the place the trainer hands to its environment:

| format | row | environment |
|---|---|---|
| `verl` | `data_source`, `agent_name`, `prompt`, `ability`, `reward_model`, `extra_info` | `synth.envs.adapters.verl` |
| `skyrl` | `data_source`, `prompt`, `env_class`, `reward_spec`, `extra_info` | `synth.envs.adapters.skyrl` |
| `trl` | `prompt`, `synth_episode`, `task_id` | `synth.envs.adapters.trl` |
| `verifiers` | `prompt`, `info.{synth_episode, oai_tools}`, `task` | `synth.envs.adapters.verifiers` |

JSON lines rather than Parquet because each row's tool set differs (a Parquet struct would merge
every row's tool names into each); `datasets.Dataset.from_json(path).to_parquet(...)` converts them
where a trainer insists on Parquet. verl's `extra_info` holds `index`, `task_id`, `tools_kwargs`
and `interaction_kwargs`; its tool and interaction config YAML are written beside the rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth.envs.adapters.common import episode_payload
from synth.envs.adapters.skyrl import ENV_CLASS
from synth.envs.adapters.verl import INTERACTION_NAME, interaction_config, tool_config
from synth.export.rl import prompt_messages

DATA_SOURCE = "synth"


def verl_example(row: dict[str, Any]) -> dict[str, Any]:
    tools = json.loads(row["tools"] or "[]")
    create = {"create_kwargs": {"task_id": row["task_id"]}}
    return {
        "data_source": DATA_SOURCE,
        "agent_name": "tool_agent",
        "prompt": prompt_messages(row),
        "ability": "agentic_tool_use",
        "reward_model": {"style": "synth_env", "ground_truth": row["trajectory_id"]},
        "extra_info": {
            "index": row["task_id"],
            "task_id": row["task_id"],
            "need_tools_kwargs": True,
            "tools_kwargs": {tool["function"]["name"]: create for tool in tools},
            "interaction_kwargs": {"name": INTERACTION_NAME, "synth_episode": episode_payload(row)},
        },
    }


def skyrl_example(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "data_source": DATA_SOURCE,
        "prompt": prompt_messages(row),
        "env_class": ENV_CLASS,
        "reward_spec": {"method": "env", "ground_truth": row["trajectory_id"]},
        "extra_info": {"task_id": row["task_id"], "synth_episode": episode_payload(row)},
    }


def trl_example(row: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt_messages(row), "synth_episode": episode_payload(row), "task_id": row["task_id"]}


def verifiers_example(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": prompt_messages(row),
        "info": {"synth_episode": episode_payload(row), "oai_tools": json.loads(row["tools"] or "[]")},
        "task": "synth_tool_use",
    }


def write_verl_configs(rows_file: Path, tools_json: list[str]) -> list[Path]:
    """verl's tool config (every distinct tool of the rows, class SynthTool) and interaction config,
    beside the rows file. JSON is YAML, so no YAML library is needed."""
    tools = [tool for text in tools_json for tool in json.loads(text or "[]")]
    written = []
    for suffix, config in (
        (".tool_config.yaml", tool_config(tools)),
        (".interaction_config.yaml", interaction_config()),
    ):
        path = rows_file.with_name(rows_file.name + suffix)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        temporary.replace(path)
        written.append(path)
    return written
