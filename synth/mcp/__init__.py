"""Live MCP servers: how a run names them, a session to one, its tool listing and its call results.

Written against the official `mcp` SDK 2.x (pinned `mcp>=2.0,<3`): the SDK's 2.0 renamed fields to
snake_case, so tools are read through `model_dump(by_alias=True)`, which gives the wire's camelCase
names (`inputSchema`, `readOnlyHint`, ...) whatever the SDK calls them in Python.
"""

from synth.mcp.servers import McpServerConfig, McpServerError, parse_server
from synth.mcp.session import LiveSession

__all__ = ["LiveSession", "McpServerConfig", "McpServerError", "parse_server"]
