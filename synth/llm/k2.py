"""Kimi K2's raw tool-call markup, for servers that run without a tool-call parser.

Served without `--tool-call-parser kimi_k2`, K2 writes its tool calls into the message `content`:

    <|tool_calls_section_begin|>
    <|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>
    <|tool_calls_section_end|>

`parse_raw_tool_calls` turns that back into `ToolCall` records. The call id is kept exactly as
emitted (`functions.NAME:IDX` must round-trip unchanged), the function name is derived from it, and
the arguments are the exact JSON text between the markers (never re-serialised). Some servers emit
the singular `<|tool_call_section_begin|>` / `<|tool_call_section_end|>`; both are accepted.

The end marker is the delimiter of a call's arguments, so braces or `<|` inside JSON strings do not
matter (only a complete K2 marker would). Anything incomplete or malformed is skipped and described
in `RawParse.problems`; the complete calls are still returned.

Ids that are not `functions.NAME:IDX` are treated as vLLM's `kimi_k2` tool parser treats them (its
call regex requires `...:IDX`, and the name is the part before the colon after the last dot): an id
without `:IDX` (e.g. `functions.get_weather.0`) is dropped, with a problem saying so. Given the names
of the offered tools, the parser also resolves a bare counter id (`0`, `functions.:1`) to the one
offered tool when only one is offered, takes vLLM's last-dot name when only that was offered
(`functions.fs.read_file:3` -> `read_file`), and records a name that was not offered (the call is
kept, so the rollout answers it with an unknown-tool error as it would any other).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from synth.records import FunctionCall, ToolCall

SECTION_BEGIN = "<|tool_calls_section_begin|>"
SECTION_END = "<|tool_calls_section_end|>"
CALL_BEGIN = "<|tool_call_begin|>"
ARGUMENT_BEGIN = "<|tool_call_argument_begin|>"
CALL_END = "<|tool_call_end|>"

# Where raw tool-call markup starts at the top level: a section, a bare call, or an orphan section end.
_TOP_LEVEL_RE = re.compile(
    r"(?P<section_begin><\|tool_calls?_section_begin\|>)"
    r"|(?P<call_begin><\|tool_call_begin\|>)"
    r"|(?P<section_end><\|tool_calls?_section_end\|>)"
)
# What may come next inside a section.
_IN_SECTION_RE = re.compile(
    r"(?P<call_begin><\|tool_call_begin\|>)"
    r"|(?P<section_end><\|tool_calls?_section_end\|>)"
    r"|(?P<section_begin><\|tool_calls?_section_begin\|>)"
)
# Markers that, found before a call's end marker, mean that call was never closed.
_CALL_INTERRUPT_RE = re.compile(r"<\|tool_call_begin\|>|<\|tool_calls?_section_(?:begin|end)\|>")
# functions.NAME:IDX -> NAME (the "functions." prefix and the ":IDX" suffix are both optional).
_CALL_ID_RE = re.compile(r"^(?:functions\.)?(?P<name>.+?)(?::(?P<index>\d+))?$", re.DOTALL)
# What vLLM's kimi_k2 parser accepts as a call id: anything, a colon, an index.
_VLLM_ID_RE = re.compile(r"^[^<]+:\d+$", re.DOTALL)
# A call id that is only a counter: "0", ":1", "functions.2", "functions.:3".
_COUNTER_ID_RE = re.compile(r"^(?:functions\.?)?:?\d+$")

_EXCERPT = 60


@dataclass(frozen=True)
class RawParse:
    """The result of parsing raw K2 tool-call markup out of a message's content."""

    content: str | None
    """The content with the markup removed, stripped; None when nothing is left."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What could not be parsed, e.g. "unterminated tool call functions.x:2"; empty when all was fine."""


def has_raw_tool_calls(content: str | None) -> bool:
    """Cheap check: does this content contain any raw K2 tool-call markup?"""
    return content is not None and "<|tool_call" in content


def k2_tool_call_id(name: str, index: int) -> str:
    """The id K2 gives the `index`-th tool call of a conversation to function `name`."""
    return f"functions.{name}:{index}"


def tool_name_from_id(call_id: str) -> str:
    """The function name inside a K2 call id: `functions.fs.read_file:3` -> `fs.read_file`."""
    match = _CALL_ID_RE.match(call_id.strip())
    return match.group("name") if match else ""


def parse_raw_tool_calls(content: str | None, offered: Collection[str] | None = None) -> RawParse:
    """Split K2's raw tool-call sections out of `content` into `ToolCall` records; `offered`, the names
    of the tools the request offered, lets ids be resolved against them (see the module docstring).

    Text around the sections is kept (joined, then stripped). Calls written without an enclosing
    section are accepted too (and noted as a problem). An unterminated section or call yields the
    calls that were complete before it, plus a problem describing what was cut off.
    """
    if not content or not has_raw_tool_calls(content):
        return RawParse(content=content)

    kept: list[str] = []
    calls: list[ToolCall] = []
    problems: list[str] = []
    pos = 0
    while True:
        match = _TOP_LEVEL_RE.search(content, pos)
        if match is None:
            kept.append(content[pos:])
            break
        kept.append(content[pos : match.start()])
        if match.group("section_end"):
            problems.append("tool-call section end without a section begin")
            pos = match.end()
        elif match.group("section_begin"):
            pos = _parse_section(content, match.end(), calls, problems, implicit=False, offered=offered)
        else:
            problems.append("tool call outside a tool-call section")
            pos = _parse_section(content, match.start(), calls, problems, implicit=True, offered=offered)

    rest = "".join(kept).strip()
    return RawParse(content=rest or None, tool_calls=calls, problems=problems)


def _parse_section(
    text: str,
    start: int,
    calls: list[ToolCall],
    problems: list[str],
    *,
    implicit: bool,
    offered: Collection[str] | None = None,
) -> int:
    """Parse calls from `start` to the end of the section; return the position just after it.

    An implicit section (bare calls with no section markers) ends at the first text that is not a
    call, which is then kept as content.
    """
    pos = start
    while True:
        match = _IN_SECTION_RE.search(text, pos)
        between = text[pos : match.start() if match else len(text)]
        if implicit and (between.strip() or match is None or match.group("section_begin")):
            return pos
        if between.strip():
            problems.append(f"unexpected text in tool-call section: {_excerpt(between)}")
        if match is None:
            problems.append("unterminated tool-call section")
            return len(text)
        if match.group("section_end"):
            if implicit:
                problems.append("tool-call section end without a section begin")
            return match.end()
        if match.group("section_begin"):
            problems.append("tool-call section begins inside another section")
            pos = match.end()
            continue
        pos = _parse_call(text, match.end(), calls, problems, offered)


def _parse_call(
    text: str, start: int, calls: list[ToolCall], problems: list[str], offered: Collection[str] | None = None
) -> int:
    """Parse one call whose begin marker ends at `start`; return where parsing should resume."""
    end = text.find(CALL_END, start)
    interrupt = _CALL_INTERRUPT_RE.search(text, start, end if end >= 0 else len(text))
    if end < 0 or interrupt is not None:
        # No end marker before the next call/section marker (or the end of the text): incomplete.
        body_end = interrupt.start() if interrupt is not None else len(text)
        call_id, _, _ = text[start:body_end].partition(ARGUMENT_BEGIN)
        problems.append(f"unterminated tool call {_excerpt(call_id) if call_id.strip() else '(no id)'}")
        return body_end
    body = text[start:end]
    call_id, sep, arguments = body.partition(ARGUMENT_BEGIN)
    call_id = call_id.strip()
    if not sep:
        problems.append(f"malformed tool call {_excerpt(body)}: no argument marker")
        return end + len(CALL_END)
    name = _resolve_name(call_id, offered, problems)
    if name is None:
        return end + len(CALL_END)
    calls.append(ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments.strip())))
    return end + len(CALL_END)


def _resolve_name(call_id: str, offered: Collection[str] | None, problems: list[str]) -> str | None:
    """The function a call id names, or None (the call is dropped) with the reason in `problems`."""
    if not call_id:
        problems.append("malformed tool call id ''")
        return None
    if _COUNTER_ID_RE.match(call_id):
        if offered is not None and len(set(offered)) == 1:
            only = next(iter(offered))
            problems.append(f"tool call id {call_id!r} names no tool: resolved to the only offered tool {only!r}")
            return only
        count = "no tools" if offered is None else f"{len(set(offered))} tools"
        problems.append(f"tool call id {call_id!r} names no tool ({count} offered): dropped")
        return None
    if not _VLLM_ID_RE.match(call_id):
        problems.append(
            f"tool call id {call_id!r} is not functions.NAME:IDX: dropped, as vLLM's kimi_k2 parser drops it"
        )
        return None
    name = tool_name_from_id(call_id)
    if offered is None or name in offered:
        return name
    last = name.rsplit(".", 1)[-1]  # vLLM's name: the part after the last dot
    if last in offered:
        return last
    problems.append(f"tool {name!r} (call {call_id}) was not offered")
    return name


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."
