"""Import from files and live MCP servers together.

A live server's `tools/list` (every page) is normalised by the same importer as a file's, under the
label naming the server; each accepted tool records the server's name (`ToolSpec.mcp_server`), which
a run's `[run.mcp_servers.NAME]` entry refers to. Server names come from the server's own
`serverInfo.name`, made a valid key (and unique when two servers share one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from synth.mcp import LiveSession, McpServerConfig
from synth.toolrepo.importer import ImportReport, import_documents, read_documents, spec_files

_NOT_KEY = re.compile(r"[^a-z0-9_]+")


async def list_server(server: McpServerConfig) -> tuple[str, list[dict[str, Any]]]:
    """(the server's name, every tool it lists); McpServerError when it fails."""
    session = await LiveSession.start(server)
    try:
        return session.server_name or "", await session.list_tools()
    finally:
        await session.close()


def server_key(name: str, taken: set[str]) -> str:
    key = _NOT_KEY.sub("_", name.lower()).strip("_") or "server"
    unique, number = key, 2
    while unique in taken:
        unique, number = f"{key}_{number}", number + 1
    return unique


async def import_all(
    paths: list[Path], servers: list[McpServerConfig]
) -> tuple[ImportReport, dict[str, McpServerConfig]]:
    """(the import report, the live servers by name); SpecFileError or McpServerError when a source fails."""
    sources: list[tuple[str, list[tuple[int | None, Any]]]] = [
        (str(path), read_documents(path)) for path in spec_files(paths)
    ]
    named: dict[str, McpServerConfig] = {}
    labels: dict[str, str] = {}
    for server in servers:
        name, tools = await list_server(server)
        key = server_key(name, set(named))
        named[key] = server
        labels[server.describe()] = key
        sources.append((server.describe(), [(None, tools)]))
    report = import_documents(sources)
    by_label = {spec.id: labels.get(file) for file, spec in _files_of(report)}
    for spec in report.accepted:
        spec.mcp_server = by_label.get(spec.id)
    return report, named


def _files_of(report: ImportReport) -> list[tuple[str, Any]]:
    """(source label, spec) of every accepted spec, in order (counts per source follow the same order)."""
    pairs: list[tuple[str, Any]] = []
    specs = iter(report.accepted)
    for file, counts in report.files.items():
        pairs.extend((file, next(specs)) for _ in range(counts.accepted))
    return pairs
