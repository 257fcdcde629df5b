"""Is a 200 answer a chat completion the client can read? One line saying what is wrong, or None.

The SDK builds its response objects without validating them (a field of the wrong type is kept as
it came, a missing one is None), and a body that is not JSON comes back as a plain string. A
server that answers 200 with an HTML login page, `{"choices": "x"}` or `"usage": "lots"` would
then fail somewhere deep in the client with an AttributeError. This check looks at exactly the
fields the client reads, so such an answer is treated as what it is, garbage from the server, and
retried like a 5xx. Fields the client does not read are never judged: servers differ in those.
"""

from __future__ import annotations

import math
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionUsage


def answer_problem(response: object) -> str | None:
    """What makes `response` unreadable as a chat completion, or None when the client can read it."""
    if isinstance(response, str):
        page = " (an HTML page)" if response.lstrip()[:1] == "<" else ""
        return f"answered 200 with a body that is not JSON{page}"
    if not isinstance(response, ChatCompletion):
        return f"answered JSON that is not a chat completion ({_kind(response)})"
    if not _optional(response.model, str):
        return f"answered a chat completion whose model is {_kind(response.model)}, not a string"
    return _choices_problem(response.choices) or _usage_problem(response.usage)


def _choices_problem(choices: Any) -> str | None:
    if not isinstance(choices, list):
        return f"answered a chat completion whose choices is {_kind(choices)}, not a list"
    if not choices:
        return "answered a chat completion with no choices"
    choice = choices[0]
    if not isinstance(choice, Choice):
        return f"answered a chat completion whose choices[0] is {_kind(choice)}, not an object"
    if not _optional(choice.finish_reason, str):
        return f"answered a chat completion whose finish_reason is {_kind(choice.finish_reason)}"
    return _message_problem(choice.message)


def _message_problem(message: Any) -> str | None:
    if not isinstance(message, ChatCompletionMessage):
        return f"answered a chat completion whose choices[0].message is {_kind(message)}, not an object"
    if not _optional(message.content, str):
        return f"answered a message whose content is {_kind(message.content)}, not a string"
    reasoning = (message.model_extra or {}).get("reasoning_content", getattr(message, "reasoning_content", None))
    if not _optional(reasoning, str):
        return f"answered a message whose reasoning_content is {_kind(reasoning)}, not a string"
    calls = message.tool_calls
    if not _optional(calls, list):
        return f"answered a message whose tool_calls is {_kind(calls)}, not a list"
    for index, call in enumerate(calls or []):
        where = f"tool_calls[{index}]"
        if isinstance(call, dict | str | int | float | list) or call is None:
            return f"answered a message whose {where} is {_kind(call)}, not an object"
        function = getattr(call, "function", None)
        if function is None:
            continue  # not a function call (e.g. a custom tool call): the client skips it
        if not isinstance(getattr(call, "id", None), str):
            return f"answered a message whose {where}.id is not a string"
        for name in ("name", "arguments"):
            if not isinstance(getattr(function, name, None), str):
                return f"answered a message whose {where}.function.{name} is not a string"
    return None


def _usage_problem(usage: Any) -> str | None:
    if usage is None:
        return None
    if not isinstance(usage, CompletionUsage):
        return f"answered a chat completion whose usage is {_kind(usage)}, not an object"
    counts: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    details = getattr(usage, "prompt_tokens_details", None)
    if details is not None:
        counts["prompt_tokens_details.cached_tokens"] = getattr(details, "cached_tokens", None)
    counts["cached_tokens"] = (usage.model_extra or {}).get("cached_tokens")  # Moonshot's place for it
    for name, value in counts.items():
        if not _is_count(value):
            return f"answered a usage whose {name} is {_kind(value)}, not a token count"
    return None


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _is_count(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0 and value == int(value)


def _kind(value: Any) -> str:
    """A value's JSON type, for a message (never the value: it may be anything the server sent)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
