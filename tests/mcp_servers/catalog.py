"""A server listing many tools over several tools/list pages (MCPServer lists everything at once, so
this one pages with its own cursor). Run: `python catalog.py COUNT` (stdio) or `python catalog.py COUNT http PORT`."""

from __future__ import annotations

import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ListToolsResult, PaginatedRequestParams, ToolAnnotations

PAGE = 40
TOPICS = ("weather forecast", "flight booking", "invoice", "calendar event", "stock quote", "recipe")


class PagedServer(MCPServer):
    async def _handle_list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + PAGE
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


def build(count: int) -> PagedServer:
    server = PagedServer("catalog")
    for index in range(count):
        topic = TOPICS[index % len(TOPICS)]
        read = index % 2 == 0
        name = f"{'get' if read else 'update'}_{topic.replace(' ', '_')}_{index}"

        def tool(item_id: str, index: int = index) -> str:
            return f"{index}:{item_id}"

        server.tool(
            name=name,
            description=f"{'Read' if read else 'Change'} the {topic} record number {index}.",
            annotations=ToolAnnotations(readOnlyHint=read, destructiveHint=False if not read else None),
        )(tool)
    return server


if __name__ == "__main__":
    catalog = build(int(sys.argv[1]))
    if len(sys.argv) > 3 and sys.argv[2] == "http":
        catalog.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        catalog.run()
