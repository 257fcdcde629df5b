"""How a run names a live MCP server: a command line (stdio) or a URL (streamable HTTP)."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator


class McpServerError(RuntimeError):
    """A server that failed to start, timed out or answered an error; the message is one line naming it."""


class McpServerConfig(BaseModel):
    """One live MCP server (`[run.mcp_servers.NAME]` in the config; `synth tools import --mcp-stdio/--mcp-url`).

    Every episode opens its own session: a stdio server is a new process each time, so state kept in
    its memory starts empty. State that outlives a session (an HTTP server, files, a database) is reset
    by `reset_tool` or `reset_command` before the episode's first call."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(default=None, description="stdio: the command line that starts the server")
    url: str | None = Field(default=None, description="streamable HTTP: the server's endpoint, e.g. http://host/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="stdio: extra environment variables")
    cwd: str | None = Field(default=None, description="stdio: the working directory of the server")
    start_timeout_s: float = Field(default=30.0, gt=0, description="to start and initialize the session")
    call_timeout_s: float = Field(default=30.0, gt=0, description="per tool call; a late answer is a timeout error")
    reset_tool: str | None = Field(
        default=None, description="a tool called with {} before every episode to reset a stateful server"
    )
    reset_command: str | None = Field(
        default=None, description="a command line run (to completion) before every episode to reset the server"
    )
    state_tool: str | None = Field(
        default=None,
        description="a read-only tool called with {} whose result is the server's state: the end state checked "
        "against the replay of a task's expected actions",
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.command is not None and not self.argv():
            raise ValueError("command is empty")
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url must be http:// or https:// (got {self.url!r})")
        for field, value in (("reset_command", self.reset_command),):
            if value is not None and not _split(value):
                raise ValueError(f"{field} is empty")
        return self

    def argv(self) -> list[str]:
        return _split(self.command or "")

    def describe(self) -> str:
        """How messages name the server: `stdio 'python notes.py'` or its URL without credentials."""
        if self.command is not None:
            return f"MCP server (stdio {self.command!r})"
        parts = urlsplit(self.url or "")
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"MCP server ({urlunsplit((parts.scheme, netloc, parts.path, '', ''))})"


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return [command] if command.strip() else []


def parse_server(command: str | None = None, url: str | None = None, **settings: object) -> McpServerConfig:
    """A server from CLI flags; a bad one is an McpServerError naming what to fix."""
    try:
        return McpServerConfig.model_validate({"command": command, "url": url, **settings})
    except ValueError as exc:
        first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise McpServerError(f"MCP server: {first}") from None
