"""One sampled trajectory as HTML: the task, the conversation (system, user, assistant with its tool
calls and their JSON arguments, tool results) and the judge's verdict per criterion.

Everything in a trajectory was written by a model (or by a tool simulator playing one), so every piece
of text goes through `html.escape` here, attributes included; long texts are cut to `MAX_TEXT`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from synth.report.charts import meter
from synth.report.samples import SampleTrajectory

MAX_TEXT = 6000
SUMMARY_CHARS = 110


def render_trajectory(sample: SampleTrajectory) -> str:
    """A <details> element for one trajectory; its data-* attributes drive the page's filter and search."""
    outcome = "accepted" if sample.accepted else "rejected"
    searchable = " ".join(
        [sample.id, sample.rubric_kind, sample.category, sample.domain, sample.agent, sample.prompt, *sample.tools]
    ).lower()
    summary = (
        f'<summary><span class="badge {outcome}">{outcome}</span>'
        f' <span class="score">{sample.score:.2f}</span>'
        f" <b>{escape(sample.rubric_kind)}</b>"
        f' <span class="dim">{escape(sample.domain or sample.category)}</span>'
        f" · {escape(_shorten(sample.prompt, SUMMARY_CHARS))}"
        f' <span class="dim">({sample.user_turns} user turns, {sample.tool_calls} tool calls)</span></summary>'
    )
    body = "".join([_task(sample), _conversation(sample.messages), _verdict(sample)])
    return (
        f'<details class="traj" data-outcome="{outcome}" data-text="{escape(_shorten(searchable, 2000))}">'
        f'{summary}<div class="traj-body">{body}</div></details>'
    )


def _task(sample: SampleTrajectory) -> str:
    persona = ", ".join(f"{key}: {value}" for key, value in sample.persona.items() if value)
    rows = [
        ("trajectory", sample.id),
        ("agent", " · ".join(part for part in (sample.agent, sample.category, sample.domain) if part)),
        ("task", sample.prompt),
        ("hidden goal", sample.user_goal),
        ("persona", persona),
        ("difficulty", sample.difficulty),
        ("tools offered", ", ".join(sample.tools)),
        ("stop reason", sample.stop_reason),
    ]
    cells = "".join(f"<dt>{escape(name)}</dt><dd>{escape(_cut(value))}</dd>" for name, value in rows if value)
    return f'<dl class="task">{cells}</dl>'


def _conversation(messages: Sequence[Mapping[str, Any]]) -> str:
    call_names: dict[str, str] = {}
    parts = ['<div class="conv">']
    for message in messages:
        role = str(message.get("role") or "unknown")
        content = message.get("content")
        if role == "system":
            parts.append(
                '<details class="msg system"><summary>system prompt</summary>'
                f'<div class="text">{escape(_cut(content))}</div></details>'
            )
        elif role == "assistant":
            parts.append('<div class="msg assistant"><div class="who">assistant</div>')
            reasoning = message.get("reasoning_content")
            if reasoning:
                parts.append(
                    f'<details class="reasoning"><summary>reasoning</summary><div class="text">'
                    f"{escape(_cut(reasoning))}</div></details>"
                )
            if content:
                parts.append(f'<div class="text">{escape(_cut(content))}</div>')
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                name = str(function.get("name") or "")
                call_names[str(call.get("id") or "")] = name
                parts.append(_tool_call(str(call.get("id") or ""), name, function.get("arguments")))
            parts.append("</div>")
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            name = call_names.get(call_id) or str(message.get("name") or "tool")
            body, _ = _json_block(content)
            parts.append(
                f'<div class="msg tool"><div class="who">tool result · {escape(name)}'
                f' <span class="dim">{escape(call_id)}</span></div>{body}</div>'
            )
        else:
            parts.append(
                f'<div class="msg {escape(role)}"><div class="who">{escape(role)}</div>'
                f'<div class="text">{escape(_cut(content))}</div></div>'
            )
    parts.append("</div>")
    return "".join(parts)


def _tool_call(call_id: str, name: str, arguments: Any) -> str:
    body, valid = _json_block(arguments)
    warning = "" if valid else ' <span class="badge rejected">arguments are not valid JSON</span>'
    return (
        f'<div class="call"><div class="who">calls <code>{escape(name)}</code>'
        f' <span class="dim">{escape(call_id)}</span>{warning}</div>{body}</div>'
    )


def _json_block(text: Any) -> tuple[str, bool]:
    """A <pre> with `text` pretty-printed when it is JSON (and whether it was), as is otherwise."""
    raw = "" if text is None else str(text)
    try:
        pretty = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return f'<pre class="json">{escape(_cut(raw))}</pre>', False
    return f'<pre class="json">{escape(_cut(pretty))}</pre>', True


def _verdict(sample: SampleTrajectory) -> str:
    outcome = "accepted" if sample.accepted else "rejected"
    threshold = "" if sample.pass_threshold is None else f" (rubric threshold {sample.pass_threshold:.2f})"
    judge = f" · judge {escape(sample.judge_model)}" if sample.judge_model else ""
    parts = [
        f'<div class="verdict"><div class="who">verdict: <span class="badge {outcome}">{outcome}</span>'
        f" score {sample.score:.2f}{escape(threshold)}{judge}</div>"
    ]
    weights = {str(c.get("name")): c.get("weight") for c in sample.criteria}
    if sample.scores:
        rows = "".join(
            f"<tr><td>{escape(str(s.get('name') or ''))}</td>"
            f"<td class=num>{_weight(weights.get(str(s.get('name'))))}</td>"
            f"<td class=num>{float(s.get('score') or 0.0):.2f}</td><td>{meter(float(s.get('score') or 0.0))}</td>"
            f"<td>{escape(_cut(s.get('rationale')))}</td></tr>"
            for s in sample.scores
        )
        parts.append(
            "<table><thead><tr><th>criterion</th><th>weight</th><th>score</th><th></th><th>judge's rationale</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        parts.append('<p class="dim">no rubric scores (the judge did not score this trajectory)</p>')
    if sample.checks:
        items = "".join(
            f'<li class="{"pass" if c.get("passed") else "fail"}">{"✓" if c.get("passed") else "✗"} '
            f"{escape(str(c.get('name') or ''))}"
            + (f' <span class="dim">— {escape(_cut(c.get("detail")))}</span>' if c.get("detail") else "")
            + "</li>"
            for c in sample.checks
        )
        parts.append(f'<div class="who">objective checks</div><ul class="checks">{items}</ul>')
    for title, lines in (("why rejected", sample.reasons), ("unusable model answers, recorded", sample.errors)):
        if lines:
            items = "".join(f"<li>{escape(_cut(line))}</li>" for line in lines)
            parts.append(f'<div class="who">{escape(title)}</div><ul>{items}</ul>')
    parts.append("</div>")
    return "".join(parts)


def _weight(value: Any) -> str:
    return "" if value is None else f"{float(value):g}"


def _cut(text: Any, limit: int = MAX_TEXT) -> str:
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
