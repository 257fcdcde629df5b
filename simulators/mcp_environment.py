"""Tools that run on live MCP servers: one more kind of environment beside the simulator and sandboxes.

An agent's tools listed by a server the run configures (`ToolSpec.mcp_server` naming a
`run.mcp_servers` entry) are called on that server for real; its other tools go to the fallback
environment (the tool simulator), so an agent may mix real and synthetic tools. Each episode opens its
own session per server on the first call (for stdio a fresh process), runs the server's reset first,
and closes it at the end. A result is recorded like a simulated one, with `live_server` set.

Objective ground truth, as for sandboxes: with a `state_tool` configured, the server's state is read
after every call and at the end; when the task has expected actions they are replayed on a fresh
session of the same server and the two states' hashes are compared by the judge's end-state check.
A server that cannot start is `McpServerUnavailable`: the environment's failure, never the episode's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from simulators.environment import CallResult, Environment
from synth.llm.errors import ModelCallError
from synth.mcp.results import result_text
from synth.mcp.servers import McpServerConfig, McpServerError
from synth.mcp.session import LiveSession
from synth.records import StateChange, Task, ToolCall, ToolSpec, Usage


class McpServerUnavailable(ModelCallError):
    """A live server that would not start or reset: recorded like an endpoint failure (the shard is redone)."""

    def __init__(self, message: str) -> None:
        super().__init__("tool", message)


def live_or_simulated(
    tools: list[ToolSpec], servers: Mapping[str, McpServerConfig], task: Task, fallback: Environment
) -> Environment:
    """An McpEnvironment when any of `tools` is served by a configured live server, else `fallback`."""
    if any(tool.mcp_server in servers for tool in tools if tool.mcp_server):
        return McpEnvironment(servers, tools, task, fallback)
    return fallback


class McpEnvironment:
    def __init__(
        self, servers: Mapping[str, McpServerConfig], tools: list[ToolSpec], task: Task, fallback: Environment
    ) -> None:
        self._servers = {name: servers[name] for name in {t.mcp_server for t in tools if t.mcp_server} & set(servers)}
        self._by_name = {tool.name: tool for tool in tools}
        self._task = task
        self._fallback = fallback
        self._sessions: dict[str, LiveSession] = {}

    async def call(
        self, spec: ToolSpec, call_id: str, arguments: dict[str, Any], *, step: int, seed: int
    ) -> CallResult:
        server = spec.mcp_server if spec.mcp_server in self._servers else None
        if server is None:
            return await self._fallback.call(spec, call_id, arguments, step=step, seed=seed)
        session = await self._session(server)
        try:
            result = await session.call_tool(spec.original_name or spec.name, arguments)
            content, ok = result_text(result)
            outcome = "success" if ok else "tool_error"
        except McpServerError as exc:
            # As a real API's time-out or failure reads to the agent; the next call starts a new session.
            timed_out = "timed out" in str(exc)
            content = json.dumps({"error": "timeout" if timed_out else "server_error", "message": str(exc)})
            ok, outcome = False, "timeout" if timed_out else "server_error"
            await self._drop(server)
        state = await self._state(server) if ok else {}
        change = StateChange(
            step=step,
            tool_call_id=call_id,
            tool_name=spec.name,
            ok=ok,
            outcome=outcome,
            state_after=state,
            live_server=server,
        )
        return CallResult(content, change, Usage())

    async def _session(self, server: str) -> LiveSession:
        if server not in self._sessions:
            self._sessions[server] = await _open(self._servers[server])
        return self._sessions[server]

    async def _drop(self, server: str) -> None:
        session = self._sessions.pop(server, None)
        if session is not None:
            await session.close()

    async def _state(self, server: str) -> dict[str, Any]:
        config = self._servers[server]
        if config.state_tool is None or server not in self._sessions:
            return {}
        try:
            return await _read_state(self._sessions[server], config)
        except McpServerUnavailable as exc:
            return {"error": str(exc)}  # the trace says so; the end state, read again, decides

    async def end_states(self) -> tuple[str | None, str | None]:
        stateful = {name: config for name, config in self._servers.items() if config.state_tool}
        if not stateful:
            return await self._fallback.end_states()
        end = {}
        for name, config in sorted(stateful.items()):
            end[name] = await _read_state(await self._session(name), config)
        expected = await self._replay(stateful) if self._task.expected_actions else None
        return _hash(end), expected

    async def _replay(self, stateful: Mapping[str, McpServerConfig]) -> str:
        """The state hash after the task's expected actions run on fresh sessions of the same servers."""
        sessions = {name: await _open(config) for name, config in stateful.items()}
        try:
            for action in self._task.expected_actions:
                await _replay_one(action, self._by_name, sessions)
            return _hash({name: await _read_state(sessions[name], stateful[name]) for name in sorted(sessions)})
        finally:
            await asyncio.gather(*(session.close() for session in sessions.values()))

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.close() for session in sessions))
        await self._fallback.close()


async def _open(config: McpServerConfig) -> LiveSession:
    """A new session, reset: McpServerUnavailable when the server cannot start or reset."""
    try:
        if config.reset_command is not None:
            await _run_reset_command(config)
        session = await LiveSession.start(config)
    except McpServerError as exc:
        raise McpServerUnavailable(str(exc)) from None
    if config.reset_tool is not None:
        try:
            result = await session.call_tool(config.reset_tool, {})
        except McpServerError as exc:
            await session.close()
            raise McpServerUnavailable(f"reset failed: {exc}") from None
        if getattr(result, "is_error", False):
            await session.close()
            raise McpServerUnavailable(f"{config.describe()}: reset tool {config.reset_tool!r} answered an error")
    return session


async def _run_reset_command(config: McpServerConfig) -> None:
    command = config.reset_command or ""
    argv = McpServerConfig(command=command).argv()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=config.cwd
        )
    except OSError as exc:
        raise McpServerError(f"{config.describe()}: reset command {command!r} cannot start: {exc.strerror}") from None
    try:
        _, err = await asyncio.wait_for(process.communicate(), config.start_timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise McpServerError(f"{config.describe()}: reset command {command!r} timed out") from None
    if process.returncode:
        last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise McpServerError(
            f"{config.describe()}: reset command {command!r} exited {process.returncode} {last[0][:200]}".rstrip()
        )


async def _read_state(session: LiveSession, config: McpServerConfig) -> dict[str, Any]:
    assert config.state_tool is not None
    try:
        result = await session.call_tool(config.state_tool, {})
    except McpServerError as exc:
        raise McpServerUnavailable(f"reading the state failed: {exc}") from None
    text, ok = result_text(result)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return value if isinstance(value, dict) else {"state": value, "ok": ok}


async def _replay_one(action: ToolCall, by_name: Mapping[str, ToolSpec], sessions: Mapping[str, LiveSession]) -> None:
    spec = by_name.get(action.function.name)
    if spec is None or spec.mcp_server is None or spec.mcp_server not in sessions:
        raise McpServerUnavailable(f"expected action {action.function.name!r} is not a tool of a live server")
    arguments = json.loads(action.function.arguments or "{}")
    try:
        await sessions[spec.mcp_server].call_tool(spec.original_name or spec.name, arguments)
    except McpServerError as exc:
        raise McpServerUnavailable(f"replaying the expected actions failed: {exc}") from None


def _hash(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]
