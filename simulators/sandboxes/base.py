"""Executable sandboxes: real state plus tools declared as `ToolSpec`s (tau2-bench style).

A sandbox owns a private root directory and an initial state. `Sandbox.call` validates the arguments
against the tool's JSON Schema before anything runs and turns every problem into an error result
(`{"error": code, "message": ...}`), never an exception, so a trajectory records it as a tool message.
Success is judged objectively: replay the gold actions on a fresh sandbox and compare state hashes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from simulators.arguments import argument_problem
from synth.records import ToolCall, ToolSpec, content_id

JsonObject = dict[str, Any]
Handler = Callable[[JsonObject], JsonObject]
SandboxFactory = Callable[[Path, JsonObject], "Sandbox"]


class ToolError(Exception):
    """A problem a tool reports to the caller as `{"error": code, "message": message}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def result(self) -> JsonObject:
        return {"error": self.code, "message": self.message}


def tool_spec(
    domain: str,
    name: str,
    description: str,
    parameters: JsonObject,
    returns: JsonObject,
    *,
    effect: Literal["read", "write"] = "read",
    failure_modes: Sequence[str] = (),
) -> ToolSpec:
    """A sandbox tool's spec; the id derives from what the tool is, so it is stable across runs."""
    return ToolSpec(
        id=content_id("sandbox", domain, name, parameters, returns, effect, prefix="tool-"),
        name=name,
        description=description,
        parameters=parameters,
        returns=returns,
        effect=effect,
        failure_modes=["invalid_arguments", *failure_modes],
        category="sandbox",
        domain=domain,
        source="sandbox",
    )


STR: JsonObject = {"type": "string"}
INT: JsonObject = {"type": "integer"}
BOOL: JsonObject = {"type": "boolean"}


def obj(properties: JsonObject, required: Sequence[str] = ()) -> JsonObject:
    """A closed JSON Schema object (no extra keys), the shape of every sandbox argument list."""
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Sandbox(ABC):
    """An environment with real state. Subclasses declare `tools()` and a handler per tool."""

    name: ClassVar[str] = ""
    # Per concrete class, filled on first use (see `_checked_specs`).
    _class_specs: ClassVar[dict[str, ToolSpec] | None] = None

    def __init__(self, root: Path, initial_state: JsonObject) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self._closed = False
        self._specs: dict[str, ToolSpec] | None = None

    @abstractmethod
    def tools(self) -> list[ToolSpec]:
        """The tools this sandbox offers, as JSON-Schema specs."""

    @abstractmethod
    def handlers(self) -> Mapping[str, Handler]:
        """Tool name -> function taking validated arguments; it raises `ToolError` for caller mistakes."""

    @abstractmethod
    def state(self) -> JsonObject:
        """A canonical JSON-able snapshot of the state (no paths, clocks or other run-specific values)."""

    def state_hash(self) -> str:
        """sha256 of the canonical JSON of `state()`."""
        return hashlib.sha256(canonical_json(self.state()).encode()).hexdigest()

    def close(self) -> None:
        """Release what the sandbox holds open; later calls return an error. Idempotent."""
        self._closed = True

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spec(self, name: str) -> ToolSpec | None:
        if self._specs is None:
            self._specs = {spec.name: spec for spec in self.tools()}
        return self._specs.get(name)

    def call(self, name: str, arguments: Any) -> JsonObject:
        """Run one tool call. Every problem comes back as `{"error": code, "message": ...}`."""
        if self._closed:
            return {"error": "closed", "message": f"sandbox {self.name!r} is closed"}
        spec = self._checked_specs().get(name)
        handler = self.handlers().get(name)
        if spec is None or handler is None:
            return {"error": "unknown_tool", "message": f"no tool named {name!r} in sandbox {self.name!r}"}
        problem = argument_problem(spec, arguments)
        if problem is not None:
            return {"error": "invalid_arguments", "message": problem}
        try:
            return handler(arguments)
        except ToolError as exc:
            return exc.result()
        except Exception as exc:  # a tool failure becomes an error tool message, as in tau2-bench
            return {"error": "internal_error", "message": f"{type(exc).__name__}: {exc}"[:300]}

    def call_tool(self, call: ToolCall) -> JsonObject:
        """Run a model's tool call: its arguments are JSON text, decoded here."""
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            return {"error": "invalid_arguments", "message": f"arguments are not valid JSON: {exc}"}
        return self.call(call.function.name, arguments)

    def _checked_specs(self) -> dict[str, ToolSpec]:
        """The specs `call` checks arguments against: read once per sandbox class (a class's tools do
        not depend on its state, see `sandbox_toolsets`) and never handed out, so every call and every
        sandbox does not deep-copy the specs again; `spec()` still gives each caller its own copies."""
        cls = type(self)
        specs = cls.__dict__.get("_class_specs")
        if specs is None:
            specs = {spec.name: spec for spec in self.tools()}
            cls._class_specs = specs
        return specs


def replay(factory: SandboxFactory, root: Path, initial_state: JsonObject, actions: Sequence[ToolCall]) -> str:
    """Build a fresh sandbox in `root`, apply `actions` in order and return its end-state hash."""
    sandbox = factory(root, initial_state)
    try:
        for action in actions:
            sandbox.call_tool(action)
        return sandbox.state_hash()
    finally:
        sandbox.close()


def matches_expected(
    sandbox: Sandbox, factory: SandboxFactory, initial_state: JsonObject, expected_actions: Sequence[ToolCall]
) -> bool:
    """Whether the live sandbox ends in the state the expected actions produce (replayed in a new temp root)."""
    with tempfile.TemporaryDirectory(prefix=f"replay-{sandbox.name}-") as tmp:
        return sandbox.state_hash() == replay(factory, Path(tmp), initial_state, expected_actions)
