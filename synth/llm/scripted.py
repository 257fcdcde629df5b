"""A scripted model for unit tests: exact replies in order, every request recorded.

It is an OpenAI-compatible ASGI app like the offline model, so tests drive the real SDK path.
Running out of steps answers 400 (the client fails fast and the test sees why); `assert_all_used`
catches a script that was longer than the code under test needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SCRIPTED_BASE_URL = "http://synth-scripted.invalid/v1"


@dataclass
class Step:
    """One scripted answer: a message, or an HTTP error status."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    reasoning_content: str | None = None
    finish_reason: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    """The usage object to answer with; None: 10 prompt and 5 completion tokens."""

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> Step:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call = {
            "id": call_id or f"functions.{name}:0",
            "type": "function",
            "function": {"name": name, "arguments": args},
        }
        return cls(tool_calls=[call])

    @classmethod
    def error(cls, status: int, headers: dict[str, str] | None = None) -> Step:
        return cls(status=status, headers=headers or {})


class ScriptedModel:
    def __init__(self, steps: list[Step], model: str = "scripted-model") -> None:
        self.steps = list(steps)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def assert_all_used(self) -> None:
        left = len(self.steps) - len(self.requests)
        if left > 0:
            raise AssertionError(f"scripted model: {left} step(s) never used")

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        index = len(self.requests)
        self.requests.append(body)
        if index >= len(self.steps):
            return JSONResponse(
                {"error": {"message": f"scripted model ran out of steps after {len(self.steps)} call(s)"}}, 400
            )
        step = self.steps[index]
        if step.status != 200:
            return JSONResponse(
                {"error": {"message": f"scripted HTTP {step.status}"}}, step.status, headers=step.headers
            )
        message: dict[str, Any] = {"role": "assistant", "content": step.content}
        if step.tool_calls:
            message["tool_calls"] = step.tool_calls
        if step.reasoning_content is not None:
            message["reasoning_content"] = step.reasoning_content
        finish = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
        return JSONResponse(
            {
                "id": f"scripted-{index}",
                "object": "chat.completion",
                "created": 0,
                "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": step.usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )
