"""The report's sections as HTML, one function each, from the figures in `ReportData`.

Text is escaped where it is written: `table` escapes every cell except `Html` ones (markup built here).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from synth.report.charts import (
    ACCEPTED,
    CACHED,
    OUTPUT,
    REJECTED,
    UNCACHED,
    UNJUDGED,
    Bar,
    fmt_int,
    fmt_pct,
    hbars,
    histogram,
    meter,
)
from synth.report.collect import ReportData
from synth.report.conversation import render_trajectory
from synth.report.figures import Breakdown, Distribution, Ranked, ToolUse
from synth.report.samples import WINDOW as SAMPLE_WINDOW


class Html(str):
    """Markup that is already safe (built from escaped parts); `table` inserts it as is."""


def _cell(value: object) -> str:
    return value if isinstance(value, Html) else escape(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return '<p class="dim">none</p>'
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if i in numeric else "example" if headers[i] == "example" else ""}">{_cell(v)}</td>'
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kpi(label: str, value: str, detail: str = "") -> str:
    return (
        f'<div class="kpi"><div class="k">{escape(label)}</div><div class="v">{escape(value)}</div>'
        f'<div class="d">{escape(detail)}</div></div>'
    )


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def grid(*charts: str) -> str:
    return '<div class="grid">' + "".join(f"<div>{chart}</div>" for chart in charts) + "</div>"


def _usd(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if value >= 100 else f"${value:.4f}" if value < 1 else f"${value:,.3f}"


# ---------------------------------------------------------------- headline


def headline(d: ReportData) -> str:
    f, a, c = d.funnel, d.agreement, d.costs
    judged = f["judged"]
    return (
        '<div class="kpis">'
        + "".join(
            [
                kpi("tasks", fmt_int(f["tasks"]), f"{fmt_int(f['trajectories'])} trajectories rolled out"),
                kpi(
                    "accepted",
                    fmt_int(f["accepted"]),
                    f"{fmt_pct(f['accepted'] / judged if judged else None)} of judged",
                ),
                kpi("judge ↔ checks agree", fmt_pct(a.rate), f"on {fmt_int(a.agree)} of {fmt_int(a.judged)} scored"),
                kpi(
                    "tools ever called",
                    fmt_pct(d.coverage.share_called),
                    f"{fmt_int(d.coverage.called)} of {fmt_int(d.coverage.offered)} offered",
                ),
                kpi(
                    "near-duplicate prompts",
                    fmt_pct(d.diversity.near_duplicate_rate),
                    f"sample of {fmt_int(d.diversity.sample)} tasks",
                ),
                kpi(
                    "cost per accepted",
                    _usd(c.per_accepted(c.cost_usd)),
                    f"{_usd(c.per_accepted(c.k2_usd))} at K2 prices",
                ),
            ]
        )
        + "</div>"
    )


# ---------------------------------------------------------------- funnel and acceptance


def funnel_section(d: ReportData) -> str:
    f = d.funnel
    tasks, judged = f["tasks"], f["judged"]
    stages = [
        ("tools", f["tools"], ""),
        ("agents", f["agents"], ""),
        ("tasks", tasks, ""),
        ("trajectories", f["trajectories"], f"{fmt_pct(f['trajectories'] / tasks)} of tasks" if tasks else ""),
        ("judged", judged, ""),
        ("accepted", f["accepted"], f"{fmt_pct(f['accepted'] / judged)} of judged" if judged else ""),
    ]
    bars = [
        Bar(name, (float(n),), " · ".join(part for part in (fmt_int(n), extra) if part)) for name, n, extra in stages
    ]
    failures = [(stage, fmt_int(n)) for stage, n in f["failures"].items()]
    parts = [
        note("Items made at each stage of the pipeline; failed items are kept in the failures table."),
        grid(
            hbars("The funnel: items per stage", bars, axis="items"),
            "<h3>Failed items per stage</h3>" + table(["stage", "failed"], failures, numeric=[1]),
        ),
    ]
    if f.get("unaccounted_tasks"):
        parts.append(note(f"{fmt_int(f['unaccounted_tasks'])} tasks have neither a verdict nor a recorded failure."))
    if not f.get("finished", True):
        parts.append(note("The run has not finished (interrupted, or still running): figures cover what is written."))
    return section("funnel", "Funnel", *parts)


def _acceptance_chart(title: str, breakdown: Breakdown) -> str:
    shown = len(breakdown.groups)
    suffix = f" (top {shown} of {breakdown.total_groups})" if breakdown.total_groups > shown else ""
    bars = [
        Bar(
            g.name,
            (float(g.accepted), float(g.rejected), float(g.unjudged)),
            f"{fmt_int(g.accepted)}/{fmt_int(g.accepted + g.rejected)} · {fmt_pct(g.rate)}",
        )
        for g in breakdown.groups
    ]
    return hbars(title + suffix, bars, (ACCEPTED, REJECTED, UNJUDGED), axis="tasks")


def acceptance_section(d: ReportData) -> str:
    return section(
        "acceptance",
        "Acceptance",
        note(
            "Tasks per group: accepted, rejected, and with no verdict (the rollout or judge failed). "
            "The text after each bar is accepted / judged and the acceptance rate. Category and domain are the agent's."
        ),
        grid(
            _acceptance_chart("Acceptance by rubric kind", d.by_kind),
            _acceptance_chart("Acceptance by category", d.by_category),
            _acceptance_chart("Acceptance by domain", d.by_domain),
        ),
    )


# ---------------------------------------------------------------- judge


def judge_section(d: ReportData) -> str:
    a = d.agreement
    matrix = (
        '<table class="matrix"><thead><tr><th></th><th>checks pass</th><th>checks fail</th></tr></thead><tbody>'
        f'<tr><th>judge pass</th><td class="agree">{fmt_int(a.both_pass)}</td>'
        f'<td class="disagree">{fmt_int(a.judge_only)}</td></tr>'
        f'<tr><th>judge fail</th><td class="disagree">{fmt_int(a.checks_only)}</td>'
        f'<td class="agree">{fmt_int(a.both_fail)}</td></tr></tbody></table>'
    )
    criteria = [Bar(name, (mean,), f"{mean:.2f} over {fmt_int(n)}") for name, mean, n in d.criteria]
    checks = [Bar(r.label, (float(r.count),), fmt_int(r.count)) for r in d.failed_checks]
    return section(
        "judge",
        "Judge",
        grid(
            histogram(
                "Judge score distribution",
                [(b.label, b.counts) for b in d.scores],
                (ACCEPTED, REJECTED),
                x_label="weighted rubric score",
                y_label="trajectories",
            ),
            "<h3>Judge vs objective checks</h3>"
            + note(
                f"They agree on {fmt_int(a.agree)} of {fmt_int(a.judged)} rubric-scored trajectories "
                f"({fmt_pct(a.rate)}). Judge pass: score at or above the rubric's threshold; "
                "checks pass: every objective check passed. Accepted needs both."
            )
            + matrix,
            hbars(
                "Mean score per rubric criterion (weakest first)", criteria, axis="mean score (0–1)", label_width=230
            ),
            hbars("Objective checks that failed", checks, axis="verdicts"),
        ),
    )


# ---------------------------------------------------------------- tools and conversations


def _tool_bars(tools: Sequence[ToolUse]) -> list[Bar]:
    return [
        Bar(t.name, (float(t.calls),), f"{fmt_int(t.calls)} calls · offered {fmt_int(t.offered_in)}×") for t in tools
    ]


def tools_section(d: ReportData) -> str:
    c = d.coverage
    return section(
        "tools",
        "Tool coverage",
        '<div class="kpis">'
        + kpi("offered tools ever called", fmt_pct(c.share_called), f"{fmt_int(c.called)} of {fmt_int(c.offered)}")
        + kpi("repository tools given to agents", fmt_int(c.given_to_agents), f"of {fmt_int(c.repository)}")
        + kpi("tool calls", fmt_int(c.calls), "to offered tools")
        + kpi("calls to tools not offered", fmt_int(c.calls_to_unoffered), "names the agent invented")
        + "</div>",
        grid(
            hbars("Most used tools", _tool_bars(c.most_used), axis="calls"),
            hbars("Least used tools (offered most, called least)", _tool_bars(c.least_used), axis="calls"),
        ),
    )


def _distribution(title: str, dist: Distribution, x_label: str) -> str:
    chart = histogram(
        title,
        [(b.label, b.counts) for b in dist.bins],
        (ACCEPTED, REJECTED, UNJUDGED),
        x_label=x_label,
        y_label="trajectories",
    )
    mean = "–" if dist.mean is None else f"{dist.mean:.2f}"
    median = "–" if dist.median is None else f"{dist.median:g}"
    return chart + note(f"mean {mean}, median {median}, max {dist.maximum if dist.maximum is not None else '–'}")


def shape_section(d: ReportData) -> str:
    stops = [Bar(str(k), (float(v),), fmt_int(v)) for k, v in d.funnel["stop_reasons"].items()]
    return section(
        "shape",
        "Turns and tool calls",
        grid(
            _distribution("User turns per trajectory", d.turns, "user messages in the conversation"),
            _distribution("Tool calls per trajectory", d.tool_calls, "tool calls made by the agent"),
            hbars("How episodes ended (stop reason)", stops, axis="trajectories"),
        ),
    )


# ---------------------------------------------------------------- failures, cost, diversity


def _ranked_rows(items: Sequence[Ranked], total: int) -> list[list[object]]:
    return [
        [i + 1, r.label, fmt_int(r.count), Html(meter(r.count / total, graded=False) if total else ""), r.example]
        for i, r in enumerate(items)
    ]


def failures_section(d: ReportData) -> str:
    rejected = d.funnel["rejected"]
    stage_rows = [[stage, r.label, fmt_int(r.count), r.example] for stage, r in d.stage_failures]
    errors_total = sum(r.count for r in d.model_errors)
    return section(
        "failures",
        "Failure reasons",
        note(
            "Reasons are normalised before counting: call ids, lists, quoted values, long hex ids and numbers "
            "become placeholders, so reasons that differ only in those count as one. One raw example each."
        ),
        "<h3>Why trajectories were rejected</h3>",
        table(
            ["#", "reason", "count", "share of rejected", "example"],
            _ranked_rows(d.rejection_reasons, rejected),
            [0, 2],
        ),
        "<h3>Items a stage could not produce (failures table)</h3>",
        table(["stage", "reason", "count", "example"], stage_rows, numeric=[2]),
        "<h3>Unusable model answers recorded during rollouts</h3>",
        table(["#", "error", "count", "share", "example"], _ranked_rows(d.model_errors, errors_total), [0, 2]),
    )


def cost_section(d: ReportData) -> str:
    c = d.costs
    bars = [
        Bar(
            r.role,
            (
                float(r.prompt_tokens - r.cached_prompt_tokens),
                float(r.cached_prompt_tokens),
                float(r.completion_tokens),
            ),
            fmt_int(r.tokens),
        )
        for r in c.roles
    ]
    role_rows = [
        [
            r.role,
            fmt_int(r.calls),
            fmt_int(r.prompt_tokens),
            fmt_int(r.cached_prompt_tokens),
            fmt_int(r.completion_tokens),
            _usd(r.cost_usd),
            _usd(r.k2_usd),
        ]
        for r in c.roles
    ]
    role_rows.append(
        [
            "all",
            fmt_int(sum(r.calls for r in c.roles)),
            fmt_int(sum(r.prompt_tokens for r in c.roles)),
            fmt_int(sum(r.cached_prompt_tokens for r in c.roles)),
            fmt_int(sum(r.completion_tokens for r in c.roles)),
            _usd(c.cost_usd),
            _usd(c.k2_usd),
        ]
    )
    outcome_rows = [
        [o.outcome, fmt_int(o.trajectories), fmt_int(o.mean_tokens), _usd(o.mean_cost_usd)] for o in c.by_outcome
    ]
    per_tokens = c.per_accepted(float(c.tokens))
    return section(
        "cost",
        "Tokens and cost",
        '<div class="kpis">'
        + kpi("tokens", fmt_int(c.tokens), "input + output, every role")
        + kpi("cost", _usd(c.cost_usd), f"{_usd(c.k2_usd)} for the same tokens at K2 prices")
        + kpi("tokens per accepted", "–" if per_tokens is None else fmt_int(per_tokens), "the whole run's / accepted")
        + kpi("cost per accepted", _usd(c.per_accepted(c.cost_usd)), f"{_usd(c.per_accepted(c.k2_usd))} at K2 prices")
        + _reasoning_kpi(d.funnel.get("reasoning") or {})
        + "".join(_busy_kpi(url, figures) for url, figures in (d.funnel.get("endpoints") or {}).items())
        + "</div>",
        grid(
            hbars("Tokens per role", bars, (UNCACHED, CACHED, OUTPUT), axis="tokens", label_width=110),
            "<h3>Per role</h3>"
            + table(
                ["role", "calls", "input", "cached input", "output", "cost", "at K2 prices"],
                role_rows,
                numeric=[1, 2, 3, 4, 5, 6],
            )
            + "<h3>Per trajectory (rollout + judge)</h3>"
            + table(["outcome", "trajectories", "mean tokens", "mean cost"], outcome_rows, numeric=[1, 2, 3]),
        ),
    )


def _busy_kpi(url: str, endpoint: dict[str, Any]) -> str:
    """How full the run kept one endpoint: its busy share (mean calls in flight / limit)."""
    detail = f"{url}: limit {endpoint.get('limit')}, peak {endpoint.get('peak_in_flight')} in flight (last session)"
    return kpi("endpoint busy", fmt_pct(float(endpoint.get("busy_share") or 0.0)), detail)


def _reasoning_kpi(reasoning: dict[str, Any]) -> str:
    """The reasoning share of output tokens, saying when it is an estimate (no reported count)."""
    if not reasoning.get("reasoning_tokens"):
        return ""
    source = "estimated from reasoning_content (not reported)" if reasoning["estimated"] else "as reported"
    detail = f"{fmt_int(reasoning['reasoning_tokens'])} of {fmt_int(reasoning['output_tokens'])}, {source}"
    return kpi("reasoning share of output", fmt_pct(reasoning["share"]), detail)


def diversity_section(d: ReportData) -> str:
    v = d.diversity
    tasks = v.tasks
    top = [
        Bar(r.label, (float(r.count),), f"{fmt_int(r.count)} · {fmt_pct(r.count / tasks if tasks else None)}")
        for r in v.top_categories
    ]
    effective = "–" if v.effective_categories is None else f"{v.effective_categories:.1f}"
    return section(
        "diversity",
        "Diversity",
        '<div class="kpis">'
        + kpi("categories", fmt_int(v.categories), f"effective number {effective} (exp of entropy)")
        + kpi("domains", fmt_int(v.domains), "of the agents that got tasks")
        + kpi("exact duplicate prompts", fmt_int(v.exact_duplicates), f"of {fmt_int(tasks)} tasks")
        + kpi(
            "near-duplicate prompts",
            fmt_pct(v.near_duplicate_rate),
            f"{fmt_int(v.near_duplicates)} of {fmt_int(v.sample)} sampled, Jaccard ≥ {v.threshold:g}",
        )
        + "</div>",
        grid(
            hbars("Tasks per category", top, axis="tasks"),
            histogram(
                "Similarity of each prompt to its closest other prompt",
                [(b.label, b.counts) for b in v.nearest],
                x_label="Jaccard similarity of word 3-shingles (sampled prompts)",
                y_label="prompts",
            ),
        ),
    )


def samples_section(d: ReportData) -> str:
    accepted = sum(1 for s in d.samples if s.accepted)
    controls = (
        '<div class="controls">'
        '<button type="button" data-filter="all" aria-pressed="true">all</button>'
        '<button type="button" data-filter="accepted" aria-pressed="false">accepted</button>'
        '<button type="button" data-filter="rejected" aria-pressed="false">rejected</button>'
        '<input id="sample-search" type="search" placeholder="filter by text: kind, domain, tool, prompt…">'
        '<button type="button" id="expand-all">expand all</button>'
        '<button type="button" id="collapse-all">collapse all</button>'
        '<span id="sample-count" class="dim"></span></div>'
    )
    listing = (
        "".join(render_trajectory(s) for s in d.samples)
        or '<p class="dim">nothing sampled (no judged trajectories yet, or --sample 0)</p>'
    )
    return section(
        "samples",
        "Browse trajectories",
        note(
            f"A fixed sample (by a hash of the id) of {accepted} accepted and {len(d.samples) - accepted} rejected "
            f"trajectories out of {fmt_int(d.funnel['judged'])} judged"
            + (
                f", drawn from the first {fmt_int(SAMPLE_WINDOW)} stored trajectories"
                if d.funnel["trajectories"] > SAMPLE_WINDOW
                else ""
            )
            + ". Open one to read the conversation, "
            "the tool calls with their arguments, the tool results and the judge's scores."
        ),
        controls,
        f'<div id="sample-list">{listing}</div>',
    )
