"""The offline model's benchmark mode: a provider-like concurrency cap and canned answers.

A benchmark must measure the client, not the server. Two knobs make the offline model a cheap,
predictable endpoint (latency itself is `FaultConfig.latency_s`, fixed or spread by
`latency_sigma`, an `asyncio.sleep`, so the server holds any number of requests in flight for free):

- `max_concurrency`: at most this many requests are served at once. Over the cap the server answers
  429 at once with a Retry-After header, as a hosted provider does (`over_capacity="reject"`, the
  default, so the client's adaptive limiter sees real back-pressure); `"wait"` queues the request
  until a slot frees instead, like a self-hosted server with a request queue.
- `canned`: every answer is a precomputed response per request kind, without the role logic, so the
  server spends almost no CPU per request. The kinds, decided from the request's shape alone:

  | request                                   | canned answer                                       |
  |-------------------------------------------|-----------------------------------------------------|
  | `response_format` JSON                    | one JSON object valid as the tool simulator's and    |
  |                                           | the judge's answer (`result`, `state_patch`,        |
  |                                           | `scores: []`)                                       |
  | tools offered, last message not a tool    | a tool call to the first offered tool, arguments    |
  | result                                    | `{}`                                                |
  | tools offered, last message a tool result | a short final answer (so an episode can end)        |
  | anything else (the simulated user)        | a closing line ending in the stop marker            |

  Canned answers serve the rollout and judge stages; the generator's stages (tools, agents, tasks)
  need the full model, whose JSON answers follow each stage's schema.

The gate also measures how busy the server was, on its own clock (`CapacityGate.busy`): the time
integral of requests in service from the first arrival to the last answer, so a benchmark reads the
endpoint's mean in flight (integral / span) exactly, rather than sampling it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synth.llm.k2 import k2_tool_call_id
from synth.llm.offline.chat_answers import STOP_MARKER, ChatAnswer

OverCapacity = Literal["reject", "wait"]
RequestKind = Literal["json", "tool_call", "answer", "text"]

CANNED_JSON = json.dumps({"result": {"status": "ok"}, "state_patch": {}, "scores": []})
CANNED_ANSWER = "Done: I have taken care of that for you. Is there anything else?"
CANNED_USER = f"Thanks, that is everything I needed. {STOP_MARKER}"
_COMPLETION_TOKENS: dict[RequestKind, int] = {"json": 16, "tool_call": 12, "answer": 16, "text": 10}


class BenchConfig(BaseModel):
    """How the offline model behaves as a benchmark endpoint (latency is `FaultConfig.latency_s`)."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(default=None, gt=0, description="requests served at once; unset: no cap")
    over_capacity: OverCapacity = Field(
        default="reject",
        description="over the cap: 'reject' answers 429 with Retry-After at once (as a provider does); "
        "'wait' queues the request until a slot frees",
    )
    canned: bool = Field(
        default=False, description="answer from a precomputed response per request kind, without the role logic"
    )


class CapacityGate:
    """At most `limit` requests in service at once (no limit when None), with counters and the
    server's own measure of how busy it was (`busy()`), on its own clock."""

    def __init__(
        self, limit: int | None, over_capacity: OverCapacity = "reject", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.over_capacity = over_capacity
        self.in_flight = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit) if limit is not None and over_capacity == "wait" else None
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Start the measures afresh (between benchmark scenarios); requests in service stay counted."""
        now = self._clock()
        self.peak_in_flight = self.in_flight
        self.rejected = 0
        self.served = 0
        # The time integral of in_flight (request-seconds), brought up to date at every change.
        self._integral = 0.0
        self._changed_at = now
        self._first_arrival: float | None = now if self.in_flight else None
        self._last_answer: float | None = None

    def _advance(self) -> float:
        now = self._clock()
        self._integral += self.in_flight * (now - self._changed_at)
        self._changed_at = now
        return now

    async def enter(self) -> bool:
        """Take a slot: False when the request is to be rejected (over the cap, policy 'reject')."""
        if self._slots is not None:
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
        elif self.limit is not None and self.in_flight >= self.limit:
            self.rejected += 1
            return False
        now = self._advance()
        if self._first_arrival is None:
            self._first_arrival = now
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return True

    def leave(self) -> None:
        self._last_answer = self._advance()
        self.in_flight -= 1
        self.served += 1
        if self._slots is not None:
            self._slots.release()

    def busy(self) -> dict[str, Any]:
        """How busy the server was since the first request (after the last reset) arrived: the span
        to the last answer (to now while requests are in service), the time integral of requests in
        service over it, their mean (integral / span) and peak."""
        now = self._advance()
        if self._first_arrival is None:
            span = 0.0
        else:
            end = now if self.in_flight or self._last_answer is None else self._last_answer
            span = end - self._first_arrival
        return {
            "busy_span_s": span,
            "in_flight_integral_s": self._integral,
            "mean_in_flight": self._integral / span if span > 0 else 0.0,
            "peak_in_flight": self.peak_in_flight,
            "served": self.served,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "max_concurrency": self.limit,
            "over_capacity": self.over_capacity,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "rejected": self.rejected,
            **self.busy(),
        }


def request_kind(body: dict[str, Any]) -> RequestKind:
    """Which canned answer a request gets, from its shape alone."""
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        return "json"
    if body.get("tools"):
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        return "answer" if last.get("role") == "tool" else "tool_call"
    return "text"


def canned_answer(kind: RequestKind, body: dict[str, Any]) -> ChatAnswer:
    """A fresh copy of the kind's precomputed answer (fresh, so a fault may change it)."""
    if kind == "json":
        return ChatAnswer(content=CANNED_JSON)
    if kind == "answer":
        return ChatAnswer(content=CANNED_ANSWER)
    if kind == "text":
        return ChatAnswer(content=CANNED_USER)
    name = _first_tool_name(body.get("tools") or [])
    call = {"id": k2_tool_call_id(name, 0), "type": "function", "function": {"name": name, "arguments": "{}"}}
    return ChatAnswer(content=None, tool_calls=[call])


def canned_usage(kind: RequestKind, body_bytes: int) -> dict[str, Any]:
    """Token counts from the request's size (about four bytes a token), computed without parsing."""
    prompt = max(1, body_bytes // 4)
    completion = _COMPLETION_TOKENS[kind]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def canned_completion(
    model: str, number: int, message: dict[str, Any], finish: str, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-canned-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "synth-offline-canned",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


def _first_tool_name(tools: list[Any]) -> str:
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function["name"]
    return "tool"
