"""The one chat client every role uses: the official `openai` SDK plus what a long run needs.

It owns, once for all roles: an adaptive concurrency limit per endpoint (halved on 429, regrown
on successes; see `synth.llm.limiter`), retries (429 honouring Retry-After, 5xx, timeouts, dropped
connections) with capped exponential backoff and jitter, fail-fast on 400/401/403/404, JSON
answers validated with pydantic and repaired by re-asking, K2 raw tool-call sections turned into
real tool calls, and usage and cost per call. The SDK's own retries are off: the client must see
every 429 and count every retry, which the SDK's internal loop hides.

Against a hostile endpoint it promises: `chat`/`chat_json` raise nothing but a `ModelCallError`
(cancellation aside). Bytes that are not HTTP, a 200 that is not a readable chat completion
(`synth.llm.answer_shape`) and a connection cut mid-body are the server answering garbage: retried
like a 5xx, then `RetriesExhausted`. Every request has a total deadline of `timeout_s` (connect,
headers and body together; the transports' read timeouts restart on every byte, so a server
trickling one byte a second would otherwise hold a call forever). Every error text is scrubbed of
the configured keys and credential-shaped strings (`ChatClient.redact`, see `synth.llm.redact`),
and a configured key is never kept in an answer either.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp

from synth.llm.answer_shape import answer_problem
from synth.llm.breaker import CircuitBreaker
from synth.llm.errors import EndpointRejected, JsonAnswerError, ModelCallError, RetriesExhausted
from synth.llm.families import build_request, shape_for
from synth.llm.k2 import has_raw_tool_calls, parse_raw_tool_calls
from synth.llm.limiter import AdaptiveLimiter
from synth.llm.presets import OFFLINE_BASE_URL, EndpointConfig
from synth.llm.pricing import PriceTable, default_price_table
from synth.llm.redact import Redactor
from synth.llm.transport import (
    InProcessTransport,
    UnusableAnswer,
    cap_answer_size,
    error_message,
    garbage_problem,
    retry_after_delay,
    transport_problem,
)
from synth.records import FunctionCall, Message, Role, ToolCall, Usage

T = TypeVar("T", bound=BaseModel)

JSON_INSTRUCTION = "Reply with one JSON object, and nothing else, that validates against this JSON Schema:"
_FAIL_FAST = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 422: "unprocessable"}


@dataclass
class ChatResult:
    message: Message
    finish_reason: str
    usage: Usage
    model: str


@dataclass
class _Endpoint:
    config: EndpointConfig
    sdk: openai.AsyncOpenAI
    gate: AdaptiveLimiter
    breaker: CircuitBreaker


def endpoint_key(config: EndpointConfig) -> str:
    """The name of the endpoint a role uses: roles with the same URL and key share one limit."""
    return f"{config.base_url} ({config.api_key_env})" if config.api_key_env else config.base_url


def endpoint_limits(endpoints: Mapping[Role, EndpointConfig]) -> dict[str, int]:
    """Each endpoint's concurrency limit: the smallest `max_concurrency` of the roles sharing it, so
    no role's stated limit is ever passed."""
    limits: dict[str, int] = {}
    for config in endpoints.values():
        key = endpoint_key(config)
        limits[key] = min(limits.get(key, config.max_concurrency), config.max_concurrency)
    return limits


def endpoint_deadlines(endpoints: Mapping[Role, EndpointConfig]) -> dict[str, float]:
    """Each endpoint's longest request deadline (`timeout_s`) among the roles sharing it: how long a
    call sent there may still hold a place in the endpoint's queue after its sender has gone."""
    deadlines: dict[str, float] = {}
    for config in endpoints.values():
        key = endpoint_key(config)
        deadlines[key] = max(deadlines.get(key, 0.0), config.timeout_s)
    return deadlines


class ChatClient:
    """Chat completions for every role, each role on its own endpoint."""

    def __init__(
        self,
        endpoints: Mapping[Role, EndpointConfig],
        *,
        env: Mapping[str, str],
        apps: Mapping[str, ASGIApp] | None = None,
        prices: PriceTable | None = None,
        seed: int = 0,
        breaker_threshold: int = 3,
        leased: bool = False,
    ) -> None:
        """`apps` serves base URLs in-process (the offline and scripted models); others go over HTTP.
        `leased`: each endpoint's limit starts at 0 and is set from outside (`gates()[key].set_lease`),
        as a Ray worker's share of a limit its whole cluster shares."""
        self._configs = dict(endpoints)
        self._limits = endpoint_limits(endpoints)
        self._breaker_threshold = breaker_threshold
        self._leased = leased
        self._env = env
        self._apps = dict(apps or {})
        self._prices = prices or default_price_table()
        self._jitter = random.Random(seed)
        self._endpoints: dict[Role, _Endpoint] = {}
        self._shared: dict[tuple[str, str | None], _Endpoint] = {}
        self.totals: dict[Role, Usage] = {}
        self._json_instructions: dict[type[BaseModel], str] = {}
        self.redact = Redactor.for_endpoints(self._configs.values(), env)
        """Scrubs the configured keys and credential-shaped strings from a text: the client applies
        it to every error it raises; apply it to any other text that records a failure."""

    def config(self, role: Role) -> EndpointConfig:
        return self._configs[role]

    def _endpoint(self, role: Role) -> _Endpoint:
        if role in self._endpoints:
            return self._endpoints[role]
        config = self._configs[role]
        key = (config.base_url, config.api_key_env)
        if key not in self._shared:
            api_key = self._env.get(config.api_key_env, "") if config.api_key_env else ""
            app = self._apps.get(config.base_url)
            if app is None and config.base_url == OFFLINE_BASE_URL:
                raise ModelCallError(role, "the offline model was not mounted; build the client with apps=")
            hooks = {"response": [cap_answer_size]}
            http_client = (
                openai.DefaultAsyncHttpxClient(transport=InProcessTransport(app=app), event_hooks=hooks)
                if app is not None
                else openai.DefaultAioHttpClient(event_hooks=hooks)
            )
            sdk = openai.AsyncOpenAI(
                base_url=config.base_url,
                api_key=api_key or "not-needed",
                max_retries=0,
                timeout=config.timeout_s,
                http_client=http_client,
            )
            name = endpoint_key(config)
            gate = AdaptiveLimiter(self._limits[name])
            if self._leased:
                gate.set_lease(0)  # nothing is sent before the first lease
            self._shared[key] = _Endpoint(config, sdk, gate, CircuitBreaker(config.base_url, self._breaker_threshold))
        self._endpoints[role] = self._shared[key]
        return self._endpoints[role]

    def concurrency(self) -> dict[str, dict[str, int]]:
        """Each endpoint's adaptive limit (limit, max_limit, in_flight, waiting, decreases, increases),
        keyed by base URL; only endpoints that have been called are listed."""
        stats: dict[str, dict[str, int]] = {}
        for (base_url, key_env), endpoint in self._shared.items():
            name = base_url if base_url not in stats else f"{base_url} ({key_env})"
            stats[name] = endpoint.gate.stats()
        return stats

    def session(self) -> ChatClient:
        """A view of this client with totals of its own: it shares the endpoints (connections,
        limits, breakers), so the shards of one worker share one budget and bill separately."""
        view = copy.copy(self)
        view.totals = {}
        return view

    def gates(self) -> dict[str, AdaptiveLimiter]:
        """Every endpoint's limiter, by `endpoint_key`, opening each endpoint the config names."""
        for role in self._configs:
            self._endpoint(role)
        return {endpoint_key(endpoint.config): endpoint.gate for endpoint in self._shared.values()}

    def down(self) -> str | None:
        """Why an endpoint is down (its breaker opened), naming it; None while every one is up."""
        for endpoint in self._shared.values():
            if endpoint.breaker.reason is not None:
                return endpoint.breaker.reason
        return None

    async def aclose(self) -> None:
        for endpoint in self._shared.values():
            await endpoint.sdk.close()
        self._shared.clear()
        self._endpoints.clear()

    async def chat(
        self,
        role: Role,
        messages: list[Message],
        *,
        seed: int,
        tools: list[dict[str, Any]] | None = None,
        json_mode: bool = False,
        max_tokens: int | None = None,
    ) -> ChatResult:
        """One completion, retried through transient faults; raises ModelCallError otherwise."""
        endpoint = self._endpoint(role)
        config = self._configs[role]  # the role's own settings; roles on one URL share only the pool
        # What the request may carry (sampling, thinking, budget, reasoning sent back) is the model
        # family's call: see synth.llm.families.
        request = build_request(
            shape_for(role, config),
            config,
            messages,
            seed=seed,
            tools=tools,
            json_mode=json_mode,
            max_tokens=max_tokens,
        )
        endpoint.breaker.check(role)
        try:
            response, retries = await self._create(role, endpoint, config, request)
            result = self._result(role, config, response, retries, tools)
        except ModelCallError as exc:
            # The attempts of a call that finally failed were made (and may be billed by a
            # provider that rate-limits late): they belong in the totals the stats report.
            self.totals[role] = self.totals.get(role, Usage()).add(exc.usage)
            endpoint.breaker.on_failure(exc)
            raise
        endpoint.breaker.on_success()
        self.totals[role] = self.totals.get(role, Usage()).add(result.usage)
        return self._without_keys(result)

    async def _create(
        self, role: Role, endpoint: _Endpoint, config: EndpointConfig, request: dict[str, Any]
    ) -> tuple[Any, int]:
        for attempt in range(config.max_retries + 1):
            rejected: EndpointRejected | None = None
            try:
                return await self._send(endpoint, config, request), attempt
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status in _FAIL_FAST or (400 <= status < 500 and status not in (408, 409, 429)):
                    rejection = self.redact(self._rejection(config, status, exc))
                    rejected = EndpointRejected(role, rejection, usage=Usage(retries=attempt), status=status)
                delay = retry_after_delay(exc.response.headers) if status == 429 else None
                problem = f"HTTP {status}"
            except TimeoutError:
                delay, problem = None, f"timed out after {config.timeout_s:g}s"
            except openai.APIConnectionError as exc:  # APITimeoutError among them
                delay, problem = None, transport_problem(exc, config.timeout_s)
            except UnusableAnswer as exc:
                delay, problem = None, str(exc)
            # Raised here, after the handler, so no SDK error rides along as __context__: it holds the
            # request (the Authorization header) and the server's body (perhaps echoing it).
            if rejected is not None:
                raise rejected
            if attempt == config.max_retries:
                raise RetriesExhausted(
                    role,
                    self.redact(f"{config.base_url}: {problem}, still failing after {config.max_retries} retries"),
                    usage=Usage(retries=attempt),
                )
            await asyncio.sleep(self._backoff(config, attempt, delay))
        raise AssertionError("unreachable")

    async def _send(self, endpoint: _Endpoint, config: EndpointConfig, request: dict[str, Any]) -> Any:
        """One readable chat completion (else `UnusableAnswer`), inside the endpoint's adaptive
        limit, telling it how the request went.

        The whole request (connect, headers, body) has `timeout_s`: the deadline cancels the
        transport, which closes the connection, and the slot is given back on the way out (also
        when the caller is cancelled). Time spent waiting for a slot is not the endpoint's."""
        async with endpoint.gate as ticket:
            try:
                async with asyncio.timeout(config.timeout_s):
                    # The request is already plain JSON, so it is posted as built: the SDK's per-call
                    # parameter transform (walking every message and tool schema) was half of a call's
                    # CPU (BENCHMARKS.md); the transport, errors and response parsing are the SDK's own.
                    response = await endpoint.sdk.post(
                        "/chat/completions",
                        body=request,
                        cast_to=ChatCompletion,
                        options={"timeout": config.timeout_s},
                    )
            except openai.APIStatusError as exc:
                if exc.status_code == 429:
                    endpoint.gate.on_rate_limited(ticket)
                raise
            except (openai.OpenAIError, TimeoutError, UnusableAnswer):
                raise
            except Exception as exc:
                # Only the transport and the SDK's parsing run in here, on the server's bytes and the
                # plain JSON built above: whatever they raise besides the SDK's own errors (aiohttp's
                # "bad status line", a JSON decode error on a body labelled JSON, ...) is the server
                # answering garbage. Only its kind is kept: its text quotes what the server sent.
                raise UnusableAnswer(garbage_problem(exc)) from None
            problem = answer_problem(response)
            if problem is not None:
                raise UnusableAnswer(problem)  # not a success: the limit grows on answers only
            endpoint.gate.on_success(ticket)
            return response

    def _backoff(self, config: EndpointConfig, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # The server knows best; still bounded, so one bad header cannot stall a run for hours.
            return min(retry_after, 10 * config.max_backoff_s)
        ceiling = min(config.max_backoff_s, 0.25 * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._jitter.random())

    def _rejection(self, config: EndpointConfig, status: int, exc: openai.APIStatusError) -> str:
        what = f"{config.base_url} answered {status} ({_FAIL_FAST.get(status, 'client error')})"
        if status == 401:
            variable = config.api_key_env or "the endpoint's API key variable"
            return f"{what}: the API key was refused or missing; set {variable} to a valid key"
        if status == 404:
            return f"{what}: check the base URL and that model {config.model!r} exists (GET /v1/models)"
        detail = error_message(exc)
        return f"{what}: {detail}" if detail else what

    def _result(
        self, role: Role, config: EndpointConfig, response: Any, retries: int, tools: list[dict[str, Any]] | None = None
    ) -> ChatResult:
        # `response` passed `answer_problem` in `_send`: every field read here has its type.
        choice = response.choices[0]
        raw = choice.message
        extra = raw.model_extra or {}
        # Kept as the server sent it, even an empty string: a thinking conversation must send every
        # assistant turn back with its reasoning_content (Moonshot refuses the request otherwise).
        reasoning = extra.get("reasoning_content", getattr(raw, "reasoning_content", None))
        message = Message(
            role="assistant",
            content=raw.content,
            reasoning_content=reasoning if isinstance(reasoning, str) else None,
            tool_calls=[
                ToolCall(id=call.id, function=FunctionCall(name=call.function.name, arguments=call.function.arguments))
                for call in raw.tool_calls or []
                if getattr(call, "function", None) is not None
            ],
        )
        if not message.tool_calls and has_raw_tool_calls(message.content):
            offered = [tool["function"]["name"] for tool in tools or [] if "function" in tool]
            parsed = parse_raw_tool_calls(message.content, offered=offered)
            message = message.model_copy(update={"content": parsed.content, "tool_calls": parsed.tool_calls})
        model = response.model or config.model
        return ChatResult(
            message=message,
            finish_reason=str(choice.finish_reason or "stop"),
            usage=self._usage(model, response.usage, retries, message.reasoning_content),
            model=model,
        )

    def _without_keys(self, result: ChatResult) -> ChatResult:
        """The answer with any configured key replaced: an endpoint that echoes the request into its
        answer must not get the key into a dataset."""
        message = result.message
        texts = [message.content or "", message.reasoning_content or ""]
        texts += [call.function.arguments for call in message.tool_calls]
        if not any(self.redact.contains_secret(text) for text in texts):
            return result
        scrub = self.redact.scrub_secrets
        cleaned = message.model_copy(
            update={
                "content": None if message.content is None else scrub(message.content),
                "reasoning_content": None if message.reasoning_content is None else scrub(message.reasoning_content),
                "tool_calls": [
                    call.model_copy(
                        update={
                            "function": call.function.model_copy(update={"arguments": scrub(call.function.arguments)})
                        }
                    )
                    for call in message.tool_calls
                ],
            }
        )
        return ChatResult(message=cleaned, finish_reason=result.finish_reason, usage=result.usage, model=result.model)

    def _usage(self, model: str, usage: Any, retries: int, reasoning: str | None = None) -> Usage:
        if usage is None:
            return Usage(calls=1, retries=retries)
        reasoning_tokens, estimated = _reasoning_tokens(usage, reasoning)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) if details is not None else None
        if cached is None:  # Moonshot reports cache hits at the top level of usage
            cached = (usage.model_extra or {}).get("cached_tokens", 0)
        prompt, completion = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
        cost = self._prices.cost_usd(model, prompt, int(cached or 0), completion)
        return Usage(
            calls=1,
            prompt_tokens=prompt,
            cached_prompt_tokens=int(cached or 0),
            completion_tokens=completion,
            cost_usd=cost or 0.0,
            retries=retries,
            reasoning_tokens=reasoning_tokens,
            reasoning_tokens_estimated=reasoning_tokens if estimated else 0,
        )

    async def chat_json(
        self, role: Role, messages: list[Message], answer_type: type[T], *, seed: int
    ) -> tuple[T, Usage]:
        """A JSON answer validated as `answer_type`; an invalid one is shown its error and re-asked."""
        instruction = self._json_instructions.get(answer_type)
        if instruction is None:
            # pydantic builds the schema afresh on each call (~0.3 ms for the judge's answer): once
            # per answer type and client is enough.
            schema = json.dumps(answer_type.model_json_schema(), separators=(",", ":"))
            instruction = self._json_instructions[answer_type] = f"{JSON_INSTRUCTION}\n```json\n{schema}\n```"
        conversation = _with_instruction(messages, instruction)
        spent = Usage()
        attempts = self._configs[role].json_repair_attempts + 1
        problem = ""
        for attempt in range(attempts):
            try:
                result = await self.chat(role, conversation, seed=seed + attempt, json_mode=True)
            except ModelCallError as exc:
                exc.usage = spent.add(exc.usage)  # the caller's bill includes the answers before it
                raise
            spent = spent.add(result.usage)
            text = result.message.content or ""
            try:
                if result.finish_reason == "length":
                    raise ValueError("the answer was cut off (finish_reason=length); answer more briefly")
                return answer_type.model_validate_json(_strip_fence(text)), spent
            except (ValidationError, ValueError) as exc:
                problem = _short(exc)
            conversation = [
                *conversation,
                Message(role="assistant", content=text, reasoning_content=result.message.reasoning_content),
                Message(
                    role="user",
                    content=f"That answer was not valid: {problem}\nReply again with only the corrected JSON object.",
                ),
            ]
        raise JsonAnswerError(
            role, self.redact(f"no valid {answer_type.__name__} after {attempts} attempts: {problem}"), usage=spent
        )


def _with_instruction(messages: list[Message], instruction: str) -> list[Message]:
    if messages and messages[0].role == "system":
        first = messages[0]
        return [first.model_copy(update={"content": f"{first.content}\n\n{instruction}"}), *messages[1:]]
    return [Message(role="system", content=instruction), *messages]


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1].rsplit("```", 1)[0]
    return stripped


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
    return str(exc)[:300]


CHARS_PER_TOKEN = 4
"""The estimate of reasoning tokens when a server does not report them (English text, common tokenizers)."""


def _reasoning_tokens(usage: Any, reasoning: str | None) -> tuple[int, bool]:
    """(reasoning tokens, whether estimated): `completion_tokens_details.reasoning_tokens` when the
    server reports it, else about a token per four characters of reasoning_content."""
    details = getattr(usage, "completion_tokens_details", None)
    reported = getattr(details, "reasoning_tokens", None) if details is not None else None
    if reported is not None:
        return int(reported), False
    if not reasoning:
        return 0, False
    completion = int(usage.completion_tokens or 0)
    return min(completion, max(1, len(reasoning) // CHARS_PER_TOKEN)), True
