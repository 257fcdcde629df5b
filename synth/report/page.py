"""The whole report as one self-contained HTML document: inline CSS, inline SVG, one inline script.

A Content-Security-Policy in the page forbids every load (no fonts, images, frames or fetches from
anywhere) and lets only this page's own style sheet and script run, by hash: even a piece of model
text that escaped escaping could not run or call out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from synth.llm.presets import OFFLINE_MODEL
from synth.report import sections
from synth.report.assets import CSS, JS, content_security_policy
from synth.report.collect import ReportData

NAV = [
    ("funnel", "Funnel"),
    ("acceptance", "Acceptance"),
    ("judge", "Judge"),
    ("tools", "Tools"),
    ("shape", "Turns & calls"),
    ("failures", "Failures"),
    ("cost", "Tokens & cost"),
    ("diversity", "Diversity"),
    ("samples", "Browse trajectories"),
]


def render_page(data: ReportData) -> str:
    name = data.run_dir.name
    body = "".join(
        [
            _header(data),
            "<main>",
            sections.headline(data),
            sections.funnel_section(data),
            sections.acceptance_section(data),
            sections.judge_section(data),
            sections.tools_section(data),
            sections.shape_section(data),
            sections.failures_section(data),
            sections.cost_section(data),
            sections.diversity_section(data),
            sections.samples_section(data),
            "</main>",
            _footer(data),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(content_security_policy())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>synth run report: {escape(name)}</title>"
        f"<style>{CSS}</style></head>"
        f"<body>{body}<script>{JS}</script></body></html>\n"
    )


def _header(data: ReportData) -> str:
    info = data.info
    config = info.get("config") or {}
    finished = info.get("finished_at")
    # The folder's name is in the title; its full path (someone's machine) is left out of a shared file.
    facts = [
        f"synth {info.get('synth_version', '?')}",
        f"preset {config.get('preset', '?')}",
        f"seed {info.get('seed', '?')}",
        f"started {info.get('started_at', '?')}",
        f"finished {finished}" if finished else "not finished",
    ]
    models = ", ".join(f"{role}: {model}" for role, model in data.models)
    banner = ""
    if any(model == OFFLINE_MODEL for _, model in data.models):
        banner = (
            f'<div class="banner">Written by the offline model ({escape(OFFLINE_MODEL)}): deterministic stand-in '
            "data for trying the pipeline, not real model output.</div>"
        )
    links = "".join(f'<a href="#{anchor}">{escape(title)}</a>' for anchor, title in NAV)
    return (
        f"<header><h1>Run report: {escape(data.run_dir.name)}</h1>"
        f'<div class="meta">{" · ".join(escape(fact) for fact in facts)}</div>'
        + (f'<div class="meta">models: {escape(models)}</div>' if models else "")
        + banner
        + f"<nav>{links}</nav></header>"
    )


def _footer(data: ReportData) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<footer>Made by <code>synth report</code> on {made}. Every figure is a DuckDB aggregate over the run's "
        f"tables; the trajectories shown are a bounded sample. Top lists show {data.top} entries. "
        "This file is self-contained and loads nothing from the network.</footer>"
    )
