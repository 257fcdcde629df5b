"""The `rl` view: one row per judged trajectory with everything a replay of its episode needs.

| column | holds |
|---|---|
| `trajectory_id`, `task_id`, `agent_id` | ids in the run |
| `system_prompt`, `prompt` | the agent's system prompt and the task's first user message |
| `tools` | the OpenAI tools list offered (JSON text) |
| `tool_specs` | the full tool specs (effect, returns, failure modes: what the tool simulator reads), JSON text |
| `toolset_id` | id of that tool set (`synth.envs.spec.toolset_id`) |
| `sandbox` | the executable sandbox the tools run in; NULL: the tool simulator plays them |
| `environment`, `initial_state` | the task's initial state (JSON text; `environment` is the older name) |
| `expected_actions` | the calls that reach the gold end state (JSON text) |
| `persona`, `user_goal`, `user_details`, `difficulty` | the simulated user: persona (JSON), hidden goal and details |
| `rubric` | JSON text of the task's rubric (kind, criteria, expected tools, checkpoints, threshold) |
| `run_seed` | the run seed: tool outcomes and the user's and judge's call seeds derive from it |
| `settings` | JSON: `run_seed` plus the limits, judge samples and tool outcome rates of the run |
| `score` | the verdict's weighted rubric score (0..1) |
| `reward` | `score` scaled by the share of objective checks passed (`synth.pipeline.judge.reward`) |
| `accepted` | whether the trajectory passed |

`synth.envs.EpisodeSpec.from_rl_row(row)` turns a row into a steppable episode.
"""

from __future__ import annotations

import json
from typing import Any

from synth.store.sql_text import sql_string


def rl_view_sql(openai_tools: str, run_info: dict[str, Any] | None) -> str:
    """CREATE VIEW rl; `openai_tools` is the SQL expression of the OpenAI tools list of `t.tools`,
    `run_info` the run's run.json (its config gives the settings; None: the settings are NULL)."""
    settings = episode_settings(run_info)
    seed = "NULL::BIGINT" if settings is None else str(int(settings["seed"]))
    settings_sql = "NULL::VARCHAR" if settings is None else sql_string(json.dumps(settings, separators=(",", ":")))
    return f"""CREATE VIEW rl AS
SELECT v.trajectory_id, v.task_id, k.agent_id, a.name AS agent_name, a.system_prompt, k.prompt,
       {openai_tools} AS tools,
       to_json(t.tools)::VARCHAR AS tool_specs,
       'toolset-' || left(md5(array_to_string(list_sort(list_transform(t.tools, lambda s: s.id)), ',')), 16)
           AS toolset_id,
       a.sandbox,
       k.initial_state AS environment, k.initial_state,
       to_json(k.expected_actions)::VARCHAR AS expected_actions,
       to_json(k.persona)::VARCHAR AS persona, k.user_goal, k.user_details, k.difficulty,
       to_json(k.rubric)::VARCHAR AS rubric,
       {seed} AS run_seed, {settings_sql} AS settings,
       v.score,
       CASE WHEN len(list_filter(v.checks, lambda c: c.passed)) = len(v.checks) THEN v.score
            ELSE v.score * len(list_filter(v.checks, lambda c: c.passed)) / len(v.checks) END AS reward,
       v.accepted
FROM verdicts AS v
JOIN trajectories AS t ON t.id = v.trajectory_id
JOIN tasks AS k ON k.id = v.task_id
LEFT JOIN agents AS a ON a.id = k.agent_id"""


def episode_settings(run_info: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `synth.envs.EpisodeSettings` fields of a run, from its run.json; None when unknown."""
    config = run_info.get("config") if isinstance(run_info, dict) else None
    run = config.get("run") if isinstance(config, dict) else None
    if not isinstance(config, dict) or not isinstance(run, dict) or not isinstance(run.get("seed"), int):
        return None
    settings = {
        key: run[key] for key in ("seed", "max_turns", "max_tool_calls", "max_tokens", "judge_samples") if key in run
    }
    if isinstance(config.get("tool_outcomes"), dict):
        settings["tool_outcomes"] = config["tool_outcomes"]
    return settings
