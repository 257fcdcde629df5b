"""The OpenAI `tools` list of an exported trajectory, made once per toolset instead of once per row.

Every trajectory stores the full specs of the tools it was offered, and the `sft` view turns them into
the OpenAI tools list row by row: at a million rows that is five million specs decoded and serialised
again (about 1.4 CPU-s per 100k rows, a third of an openai export), for a few thousand distinct
toolsets. A trajectory is offered its agent's tools, resolved through the run's `tools` table
(`synth.runners.shard`: `[tools_by_id[i] for i in agent.tool_ids]`), so the list is a function of the
agent: `register_agent_tools` builds it once per distinct `tool_ids` with the view's own expression
(same bytes), and the export joins it on `agent_id`.

That holds only for a run whose agents and tools tables are whole and agree with its trajectories. It is
used only when (1) every agent id has one toolset, (2) every id of every toolset resolves to a tool,
(3) every trajectory's agent has a row, and (4) the first `SAMPLE_ROWS` trajectories' own tools
serialise to exactly the agent's list; otherwise the export serialises each row's own tools, as before.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from synth.store.catalog import openai_tools_sql

TOOLSETS = "export_toolsets"
"""Temporary table (toolset, tools): the OpenAI tools list (JSON text) of each distinct toolset."""
AGENT_TOOLSETS = "export_agent_toolsets"
"""Temporary table (agent_id, toolset): each agent's toolset (a few bytes a row; the text is shared)."""

SAMPLE_ROWS = 200

_BUILD = f"""CREATE OR REPLACE TEMP TABLE {TOOLSETS} AS
WITH toolset AS (SELECT DISTINCT tool_ids FROM agents),
member AS (
    SELECT tool_ids, unnest(generate_series(1, len(tool_ids))) AS position, unnest(tool_ids) AS tool_id
    FROM toolset
),
spec AS (SELECT DISTINCT ON (id) * FROM tools ORDER BY id),
gathered AS (
    SELECT m.tool_ids, list(s ORDER BY m.position) FILTER (WHERE s.id IS NOT NULL) AS specs
    FROM member AS m LEFT JOIN spec AS s ON s.id = m.tool_id
    GROUP BY m.tool_ids
)
SELECT row_number() OVER () AS toolset, tool_ids, tools FROM (  -- toolsets whose every id is a tool
    SELECT tool_ids, {openai_tools_sql("specs")} AS tools FROM gathered WHERE len(specs) = len(tool_ids)
    UNION ALL
    SELECT tool_ids, '[]' FROM toolset WHERE len(tool_ids) = 0
);
CREATE OR REPLACE TEMP TABLE {AGENT_TOOLSETS} AS
SELECT a.id AS agent_id, any_value(t.toolset) AS toolset
FROM agents AS a JOIN {TOOLSETS} AS t ON t.tool_ids = a.tool_ids
GROUP BY a.id
HAVING count(DISTINCT t.toolset) = 1  -- an agent id written twice with other tools is left out"""

_UNRESOLVED = f"""SELECT count(*) FROM trajectories AS t ANTI JOIN {AGENT_TOOLSETS} AS a ON a.agent_id = t.agent_id"""

_SAMPLE_DISAGREES = f"""SELECT count(*) FROM (
    SELECT agent_id, {openai_tools_sql("tools")} AS tools FROM trajectories LIMIT {SAMPLE_ROWS}
) AS t JOIN {AGENT_TOOLSETS} AS a ON a.agent_id = t.agent_id JOIN {TOOLSETS} AS s ON s.toolset = a.toolset
WHERE t.tools IS DISTINCT FROM s.tools"""

INDEX_SQL = "coalesce(agent_toolset.toolset, 0)"
"""With `JOIN_SQL`: a row's toolset as a position in `toolset_texts` (0: none, the empty list)."""

JOIN_SQL = f"""
LEFT JOIN {AGENT_TOOLSETS} AS agent_toolset ON agent_toolset.agent_id = s.agent_id
LEFT JOIN {TOOLSETS} AS toolset ON toolset.toolset = agent_toolset.toolset"""
"""The join giving each row `s` (with an `agent_id`) its agent's tools list as `toolset.tools`."""


def register_agent_tools(con: duckdb.DuckDBPyConnection) -> bool:
    """Create `TOOLSETS` and `AGENT_TOOLSETS` in `con` (a run's catalog) and say whether the export may
    take each trajectory's tools list from them (`JOIN_SQL`; see the module doc); False: it may not."""
    con.execute(_BUILD)
    for check in (_UNRESOLVED, _SAMPLE_DISAGREES):
        [(found,)] = con.execute(check).fetchall()
        if found:
            return False
    return True


def toolset_texts(con: duckdb.DuckDBPyConnection) -> pa.Array:
    """The tools list of each toolset of `register_agent_tools`, at its number (position 0: `[]`, what
    a row without a toolset has), so `INDEX_SQL` picks a row's text from it."""
    table = con.sql(f"SELECT toolset, tools FROM {TOOLSETS} ORDER BY toolset").to_arrow_table()
    numbers = table.column("toolset").to_pylist()
    if numbers != list(range(1, len(numbers) + 1)):  # row_number() made them: 1, 2, ... with no gap
        raise AssertionError(f"{TOOLSETS} is not numbered 1..{len(numbers)}")
    return pa.concat_arrays([pa.array(["[]"], pa.string()), table.column("tools").combine_chunks().cast(pa.string())])
