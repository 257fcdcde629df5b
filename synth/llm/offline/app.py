"""The offline model as an OpenAI-compatible ASGI app (`/v1/chat/completions`, `/v1/models`).

It runs in-process behind the SDK's HTTP transport or on a loopback port (`synth serve-offline`);
either way requests travel through the real `openai` SDK. Answers are a function of the request
(and its seed), so runs are reproducible. The benchmark mode (`BenchConfig`: a concurrency cap and
canned answers; see `synth.llm.offline.bench`) makes it a cheap endpoint for measuring the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from synth.llm.offline.bench import (
    BenchConfig,
    CapacityGate,
    canned_answer,
    canned_completion,
    canned_usage,
    request_kind,
)
from synth.llm.offline.chat_answers import STOP_MARKER, ChatAnswer, answer_policy, answer_user
from synth.llm.offline.emulate import MoonshotEmulator
from synth.llm.offline.faults import Fault, FaultConfig, FaultPlan
from synth.llm.offline.json_answers import answer_json
from synth.llm.prefix_cache import PrefixCache, prompt_tokens, render_prompt
from synth.llm.presets import OFFLINE_MODEL


class DroppedConnection(ConnectionError):
    """Raised mid-response to cut the connection, as a flaky network would."""


class _DroppedResponse(Response):
    """Starts the answer, then raises: over a socket the server closes the connection mid-response
    (raised before the start, the server would answer 500 instead of dropping)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        raise DroppedConnection("offline model dropped the connection (injected fault)")


class OfflineModel:
    """A deterministic model playing every role, with fault injection. One instance per server."""

    def __init__(
        self,
        faults: FaultConfig | None = None,
        *,
        model: str = OFFLINE_MODEL,
        slip_rate: float = 0.15,
        raw_tool_calls: bool = False,
        api_key: str | None = None,
        bench: BenchConfig | None = None,
        emulator: MoonshotEmulator | None = None,
    ) -> None:
        self.model = model
        self.emulator = emulator  # a provider's contract enforced on every request (emulate.py)
        self.slip_rate = slip_rate
        self.raw_tool_calls = raw_tool_calls
        self.bench = bench or BenchConfig()
        self._api_key = api_key
        self._plan = FaultPlan(faults or FaultConfig())
        self._gate = CapacityGate(self.bench.max_concurrency, self.bench.over_capacity)
        # One cache per server, as a provider keeps one per account: prefixes shared across episodes
        # (an agent's system prompt and tools, a role's instructions) are cached too.
        self._prefix_cache = PrefixCache()
        self.requests = 0
        self.answered = 0
        self.faults_served: dict[str, int] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/offline/stats", self._stats, methods=["GET"]),
                Route("/offline/stats/reset", self._reset_stats, methods=["POST"]),
            ]
        )

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet answered."""
        return self._gate.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self._gate.peak_in_flight

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (policy 'wait')."""
        return self._gate.waiting

    @property
    def rejected(self) -> int:
        """Requests answered 429 for being over the concurrency cap (policy 'reject')."""
        return self._gate.rejected

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and tests, and how busy the server was (see `CapacityGate.busy`);
        also served as GET /offline/stats."""
        config = self._plan.config
        return {
            "requests": self.requests,
            "answered": self.answered,
            "latency_s": config.latency_s,
            "latency_sigma": config.latency_sigma,
            "latency_seed": config.latency_seed,
            "canned": self.bench.canned,
            "faults": dict(self.faults_served),
            **self._gate.stats(),
            **({"emulator": self.emulator.stats()} if self.emulator else {}),
        }

    def reset_stats(self) -> None:
        """Zero the counters and busy measures (between benchmark scenarios); also POST /offline/stats/reset."""
        self.requests = 0
        self.answered = 0
        self.faults_served = {}
        self._gate.reset()

    async def _stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.stats())

    async def _reset_stats(self, request: Request) -> JSONResponse:
        self.reset_stats()
        return JSONResponse(self.stats())

    async def _pause(self, seconds: float) -> None:
        """The latency of one answer, as drawn for its request (a seam for tests)."""
        await asyncio.sleep(seconds)

    async def _models(self, request: Request) -> JSONResponse:
        ids = self.emulator.model_ids() if self.emulator else [self.model]
        return JSONResponse(
            {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "synth"} for i in ids]}
        )

    async def _chat(self, request: Request) -> Response:
        self.requests += 1
        if self._api_key is not None and request.headers.get("authorization") != f"Bearer {self._api_key}":
            return _error(401, "Invalid Authentication", "invalid_authentication_error")
        try:
            raw = await request.body()
            body = json.loads(raw)
            messages = body["messages"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            return _error(400, "request body must be JSON with a 'messages' list", "invalid_request_error")
        refusal = self.emulator.check(body) if self.emulator else None
        if refusal is not None:
            return _error(refusal.status, refusal.message, refusal.kind)
        config = self._plan.config
        if not await self._gate.enter():
            self.faults_served["over_capacity"] = self.faults_served.get("over_capacity", 0) + 1
            return _error(
                429,
                f"Too many concurrent requests (at most {self._gate.limit}); retry shortly",
                "rate_limit_error",
                {"retry-after": f"{config.retry_after_s:g}"},
            )
        try:
            return await self._answer(body, messages, raw)
        finally:
            self._gate.leave()

    async def _answer(self, body: dict[str, Any], messages: list[dict[str, Any]], raw: bytes) -> Response:
        fault = self._plan.next()
        self.faults_served[fault] = self.faults_served.get(fault, 0) + 1
        config = self._plan.config
        latency = config.latency_for(raw)
        if latency:
            await self._pause(latency)
        if fault in ("rate_limit", "rate_limit_retry_after"):
            headers = {"retry-after": f"{config.retry_after_s:g}"} if fault == "rate_limit_retry_after" else None
            return _error(429, "Rate limit reached, slow down", "rate_limit_error", headers)
        if fault == "server_error":
            return _error(500, "The server had an error while processing your request", "server_error")
        if fault == "unauthorized":
            return _error(401, "Invalid Authentication", "invalid_authentication_error")
        if fault == "timeout":
            await asyncio.sleep(config.timeout_s)
        if fault == "drop":
            return _DroppedResponse()
        self.answered += 1
        answer = (
            self.complete_canned(body, fault, len(raw)) if self.bench.canned else self.complete(body, messages, fault)
        )
        return JSONResponse(self.emulator.shape(body, answer) if self.emulator else answer)

    def complete(self, body: dict[str, Any], messages: list[dict[str, Any]], fault: Fault = "ok") -> dict[str, Any]:
        """The chat completion JSON for a request body (no transport faults applied)."""
        rng = random.Random(_fingerprint(body))
        tools = body.get("tools") or []
        json_mode = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
        if json_mode:
            answer = ChatAnswer(content=json.dumps(answer_json(_all_text(messages), rng), ensure_ascii=False))
        elif tools:
            answer = answer_policy(messages, tools, rng, self.slip_rate)
        elif STOP_MARKER in _all_text([m for m in messages if m.get("role") == "system"]):
            answer = answer_user(messages, rng)
        else:
            answer = ChatAnswer(content="OK.")
        answer, finish = _with_fault(answer, fault, json_mode)
        return self._completion(body, messages, answer, finish)

    def complete_canned(self, body: dict[str, Any], fault: Fault = "ok", size: int = 0) -> dict[str, Any]:
        """The canned completion for a request of `size` bytes (benchmark mode; no role logic)."""
        kind = request_kind(body)
        answer, finish = _with_fault(canned_answer(kind, body), fault, kind == "json")
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls and self.raw_tool_calls:
            message["content"] = (answer.content or "") + _raw_section(answer.tool_calls)
        elif answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        return canned_completion(self.model, self.answered, message, finish, canned_usage(kind, size))

    def _completion(
        self, body: dict[str, Any], messages: list[dict[str, Any]], answer: ChatAnswer, finish: str
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls and self.raw_tool_calls:
            message["content"] = (answer.content or "") + _raw_section(answer.tool_calls)
        elif answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        prompt = render_prompt(messages, body.get("tools"))
        input_tokens = prompt_tokens(prompt)
        completion_tokens = _tokens(json.dumps(message))
        return {
            "id": "chatcmpl-" + _fingerprint(body)[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "synth-offline",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": input_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self._prefix_cache.observe(prompt)},
            },
        }


def _with_fault(answer: ChatAnswer, fault: Fault, json_mode: bool) -> tuple[ChatAnswer, str]:
    """The answer as a content fault changes it, with its finish reason."""
    if json_mode and fault == "malformed_json":
        text = answer.content or ""
        answer = ChatAnswer(content=text[: max(1, len(text) // 2)] + " <- not JSON")
    if answer.tool_calls and fault == "bad_arguments":
        answer.tool_calls[0]["function"]["arguments"] = '{"broken": '
    if answer.tool_calls and fault == "unknown_tool":
        answer.tool_calls[0]["function"]["name"] = "nonexistent_tool"
    finish = "tool_calls" if answer.tool_calls else "stop"
    if fault == "truncated":
        text = answer.content or json.dumps(answer.tool_calls)
        answer = ChatAnswer(content=text[: max(1, len(text) // 2)])
        finish = "length"
    return answer, finish


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


def _fingerprint(body: dict[str, Any]) -> str:
    relevant = {k: body.get(k) for k in ("messages", "tools", "response_format", "seed", "model")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def _all_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _tokens(text: str) -> int:
    # About four characters a token, as for English text with common tokenizers.
    return max(1, len(text) // 4)


def _raw_section(calls: list[dict[str, Any]]) -> str:
    parts = [
        f"<|tool_call_begin|>{call['id']}<|tool_call_argument_begin|>{call['function']['arguments']}<|tool_call_end|>"
        for call in calls
    ]
    return "<|tool_calls_section_begin|>" + "".join(parts) + "<|tool_calls_section_end|>"
