"""Where an episode's tool calls run: the simulated world model or an executable sandbox.

Both answer a parsed call with the tool message content and a recorded state change; the rollout
does not care which it has. A sandbox environment also knows whether the episode reached the end
state the task's expected actions define.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from simulators.sandboxes import SANDBOXES, replay
from simulators.tool_simulator import ToolSimulator
from synth.records import StateChange, Task, ToolSpec, Usage


@dataclass
class CallResult:
    content: str
    change: StateChange
    usage: Usage


class Environment(Protocol):
    async def call(
        self, spec: ToolSpec, call_id: str, arguments: dict[str, Any], *, step: int, seed: int
    ) -> CallResult: ...

    async def end_states(self) -> tuple[str | None, str | None]:
        """(end-state hash, expected end-state hash) for sandboxes; (None, None) when simulated."""
        ...

    async def close(self) -> None: ...


class SimulatedEnvironment:
    """The `tool` role plays every call on a JSON state (the K2 world model)."""

    def __init__(self, simulator: ToolSimulator, initial_state: dict[str, Any]) -> None:
        self._simulator = simulator
        self.state = dict(initial_state)

    async def call(
        self, spec: ToolSpec, call_id: str, arguments: dict[str, Any], *, step: int, seed: int
    ) -> CallResult:
        outcome = await self._simulator.call(spec, self.state, call_id, arguments, step=step, seed=seed)
        self.state = outcome.state
        return CallResult(outcome.content, outcome.change, outcome.usage)

    async def end_states(self) -> tuple[str | None, str | None]:
        return None, None

    async def close(self) -> None:
        pass


class SandboxEnvironment:
    """Calls run for real in a sandbox rooted in a private temporary folder.

    Sandbox work is blocking (files, DuckDB): it runs in a worker thread, one step at a time per
    sandbox, so the event loop keeps every other episode's model calls moving meanwhile."""

    @classmethod
    async def open(cls, name: str, task: Task) -> SandboxEnvironment:
        return await asyncio.to_thread(cls, name, task)

    def __init__(self, name: str, task: Task) -> None:
        if name not in SANDBOXES:
            raise ValueError(f"unknown sandbox {name!r}; known: {', '.join(SANDBOXES)}")
        self._factory = SANDBOXES[name]
        self._task = task
        self._folder = tempfile.TemporaryDirectory(prefix=f"synth-{name}-")
        self._sandbox = self._factory(Path(self._folder.name), dict(task.initial_state))

    async def call(
        self, spec: ToolSpec, call_id: str, arguments: dict[str, Any], *, step: int, seed: int
    ) -> CallResult:
        result, state = await asyncio.to_thread(self._call, spec.name, arguments)
        error = result.get("error") if isinstance(result, dict) else None
        change = StateChange(
            step=step,
            tool_call_id=call_id,
            tool_name=spec.name,
            ok=error is None,
            outcome="success" if error is None else str(error),
            state_after=state,
        )
        return CallResult(json.dumps(result, ensure_ascii=False, default=str), change, Usage())

    def _call(self, name: str, arguments: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        result = self._sandbox.call(name, arguments)
        return result, self._sandbox.state()

    def _end_states(self) -> tuple[str | None, str | None]:
        with tempfile.TemporaryDirectory(prefix="synth-replay-") as other:
            expected = replay(self._factory, Path(other), dict(self._task.initial_state), self._task.expected_actions)
        return self._sandbox.state_hash(), expected

    async def end_states(self) -> tuple[str | None, str | None]:
        return await asyncio.to_thread(self._end_states)

    def _close(self) -> None:
        self._sandbox.close()
        self._folder.cleanup()

    async def close(self) -> None:
        await asyncio.to_thread(self._close)


def sandbox_toolsets() -> dict[str, list[ToolSpec]]:
    """Each sandbox's tools, read off a throwaway instance (the specs do not depend on state)."""
    toolsets = {}
    for name, factory in SANDBOXES.items():
        with tempfile.TemporaryDirectory(prefix=f"synth-{name}-") as folder:
            sandbox = factory(Path(folder), {})
            try:
                toolsets[name] = sandbox.tools()
            finally:
                sandbox.close()
    return toolsets
