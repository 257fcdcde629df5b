"""A session to one live MCP server, owned by a task of its own.

The SDK's client is an async context whose cancel scopes belong to the task that entered it, while a
rollout opens, calls and closes from wherever it is. So one owner task enters the client, holds it
until `close()`, and exits it; everything else only sends requests. Every failure to start,
time-out or protocol error becomes one `McpServerError` line naming the server (and, for stdio, the
last line the server wrote to stderr), never an exception group.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from typing import IO, Any

from synth.mcp.servers import McpServerConfig, McpServerError

MAX_PAGES = 1000
"""tools/list pages read before a server whose cursor never ends is given up on."""


class LiveSession:
    """`await LiveSession.start(config)`, then `list_tools()` / `call_tool()`, then `close()`."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.server_name: str | None = None
        self._client: Any = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self._stderr: IO[str] | None = None

    @classmethod
    async def start(cls, config: McpServerConfig) -> LiveSession:
        session = cls(config)
        session._owner = asyncio.create_task(session._own())
        try:
            await asyncio.wait_for(asyncio.shield(session._ready), config.start_timeout_s)
        except TimeoutError:
            tail = session._stderr_tail()
            await session.close()
            raise McpServerError(f"{config.describe()}: no session within {config.start_timeout_s:g}s{tail}") from None
        except McpServerError:
            await session.close()
            raise
        return session

    async def _own(self) -> None:
        from mcp import Client

        try:
            async with Client(self._transport(), cache=None, read_timeout_seconds=self.config.call_timeout_s) as client:
                self._client = client
                info = client.server_info
                self.server_name = info.name if info is not None else None
                self._ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # the SDK raises exception groups; one line is what a user needs
            if not self._ready.done():
                self._ready.set_exception(McpServerError(f"{self.config.describe()}: {self._reason(exc)}"))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _transport(self) -> Any:
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client

        if self.config.url is not None:
            return streamable_http_client(self.config.url)
        argv = self.config.argv()
        # The server's stderr goes to a file of ours: its last line explains a failed start.
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        # The SDK starts the server with a minimal environment (PATH, HOME, ...) plus `env`: API keys
        # in ours never reach a third-party server.
        parameters = StdioServerParameters(
            command=argv[0], args=argv[1:], env=dict(self.config.env) or None, cwd=self.config.cwd
        )
        return stdio_client(parameters, errlog=self._stderr)

    def _reason(self, exc: BaseException) -> str:
        root = _root_cause(exc)
        if isinstance(root, FileNotFoundError):
            text = f"cannot start: command not found ({self.config.argv()[0]})"
        elif isinstance(root, OSError):
            text = f"cannot start: {root.strerror or root}"
        else:
            detail = " ".join(str(root).split()) or type(root).__name__
            text = f"failed: {detail}"
        return text + self._stderr_tail()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read()[-4000:].splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return f" (server stderr: {lines[-1][:200]})" if lines else ""

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server lists, following its cursor, as wire-shaped dicts (camelCase keys)."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = await self._request(self._client.list_tools(cursor=cursor), "tools/list")
            tools.extend(tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools
            if cursor in seen:
                raise McpServerError(f"{self.config.describe()}: tools/list repeats the cursor {cursor!r}")
            seen.add(cursor)
        raise McpServerError(f"{self.config.describe()}: tools/list did not end after {MAX_PAGES} pages")

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """The server's CallToolResult; McpServerError on a timeout or a protocol error."""
        return await self._request(self._client.call_tool(name, arguments), f"tools/call {name}")

    async def _request(self, request: Any, what: str) -> Any:
        if self._client is None:
            request.close()
            raise McpServerError(f"{self.config.describe()}: the session is closed")
        try:
            return await asyncio.wait_for(request, self.config.call_timeout_s)
        except TimeoutError:
            raise McpServerError(
                f"{self.config.describe()}: {what} timed out after {self.config.call_timeout_s:g}s"
            ) from None
        except Exception as exc:
            root = _root_cause(exc)
            raise McpServerError(
                f"{self.config.describe()}: {what} failed: {' '.join(str(root).split()) or type(root).__name__}"
            ) from None

    async def close(self) -> None:
        self._closing.set()
        if self._owner is not None and not self._owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._owner), 5)
            except (TimeoutError, Exception):
                self._owner.cancel()
                with contextlib.suppress(BaseException):
                    await self._owner
        self._client = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the SDK's task groups wrap what really happened)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
