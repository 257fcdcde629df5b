"""The page's only style sheet and script, inlined into the report (their hashes go into its CSP)."""

from __future__ import annotations

import base64
import hashlib

CSS = """
:root { --acc: #2f7d4f; --rej: #c2453d; --ink: #1f2328; --dim: #5f6670; --line: #dfe2e6; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: var(--bg); }
header, main, footer { max-width: 1420px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 10px; padding-top: 6px; }
.meta { color: var(--dim); font-size: 13px; }
.banner { background: #fff6dd; border: 1px solid #ecd48a; padding: 6px 10px; border-radius: 6px; margin: 10px 0;
          font-size: 13px; }
nav { margin: 10px 0 0; font-size: 13px; }
nav a { color: #2d5f9a; margin-right: 12px; text-decoration: none; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(175px, 1fr)); gap: 10px; margin: 14px 0; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.kpi .v { font-size: 24px; font-weight: 650; }
.kpi .k { font-size: 12px; color: var(--dim); text-transform: uppercase; letter-spacing: .03em; }
.kpi .d { font-size: 12px; color: var(--dim); }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; margin: 14px 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px 24px; }
.note { color: var(--dim); font-size: 13px; margin: 4px 0 10px; max-width: 110ch; }
svg.chart { width: 100%; max-width: 600px; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--dim); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.example { color: var(--dim); max-width: 60ch; overflow-wrap: anywhere; }
.matrix td, .matrix th { padding: 4px 14px; text-align: center; }
.matrix .agree { background: #e5f3ea; }
.matrix .disagree { background: #fbe7e5; }
.dim { color: var(--dim); font-weight: normal; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px; color: #fff;
         vertical-align: 1px; }
.badge.accepted { background: var(--acc); }
.badge.rejected { background: var(--rej); }
.controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }
.controls button { font: inherit; font-size: 13px; padding: 3px 10px; border: 1px solid var(--line);
                   background: #fff; border-radius: 6px; cursor: pointer; }
.controls button[aria-pressed="true"] { background: #2d5f9a; color: #fff; border-color: #2d5f9a; }
.controls input { font: inherit; font-size: 13px; padding: 3px 8px; border: 1px solid var(--line);
                  border-radius: 6px; min-width: 260px; }
details.traj { border: 1px solid var(--line); border-radius: 8px; margin: 6px 0; background: #fff; }
details.traj > summary { cursor: pointer; padding: 7px 10px; list-style-position: inside; }
details.traj[open] > summary { border-bottom: 1px solid var(--line); background: #fafbfc; }
.score { font-variant-numeric: tabular-nums; font-weight: 600; }
.traj-body { padding: 10px 14px; }
dl.task { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 12px; font-size: 13px; }
dl.task dt { color: var(--dim); }
dl.task dd { margin: 0; overflow-wrap: anywhere; }
.conv { display: flex; flex-direction: column; gap: 8px; max-width: 980px; }
.msg { border-radius: 8px; padding: 7px 10px; border: 1px solid var(--line); }
.msg .who, .verdict .who, .call .who { font-size: 12px; color: var(--dim); margin-bottom: 3px; }
.who code { color: var(--ink); font-size: 12px; }
.msg.user { background: #eef4fb; margin-right: 12%; }
.msg.assistant { background: #f3f1fa; margin-left: 12%; }
.msg.tool { background: #f7f7f2; margin-left: 12%; }
.msg.system { background: #f4f4f4; font-size: 13px; }
.msg.system > summary, .reasoning > summary { cursor: pointer; color: var(--dim); font-size: 12px; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.call { border-left: 3px solid #8a7cc4; padding: 2px 0 2px 8px; margin-top: 6px; }
pre.json { margin: 0; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
           white-space: pre-wrap; overflow-wrap: anywhere; max-height: 340px; overflow: auto; }
.verdict { margin-top: 12px; border-top: 1px dashed var(--line); padding-top: 8px; }
ul.checks { list-style: none; padding-left: 0; margin: 2px 0 8px; font-size: 13px; }
ul.checks .pass { color: var(--acc); }
ul.checks .fail { color: var(--rej); }
svg.meter { vertical-align: middle; }
footer { color: var(--dim); font-size: 12px; padding-bottom: 30px; }
"""

JS = """
(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll('details.traj'));
  var buttons = Array.prototype.slice.call(document.querySelectorAll('button[data-filter]'));
  var search = document.getElementById('sample-search');
  var counter = document.getElementById('sample-count');
  var filter = 'all';
  function apply() {
    var query = search.value.trim().toLowerCase();
    var shown = 0;
    items.forEach(function (item) {
      var visible = (filter === 'all' || item.dataset.outcome === filter) &&
        (query === '' || item.dataset.text.indexOf(query) !== -1);
      item.hidden = !visible;
      if (visible) { shown += 1; }
    });
    counter.textContent = shown + ' of ' + items.length + ' shown';
  }
  buttons.forEach(function (button) {
    button.addEventListener('click', function () {
      filter = button.dataset.filter;
      buttons.forEach(function (other) { other.setAttribute('aria-pressed', String(other === button)); });
      apply();
    });
  });
  search.addEventListener('input', apply);
  document.getElementById('expand-all').addEventListener('click', function () {
    items.forEach(function (item) { if (!item.hidden) { item.open = true; } });
  });
  document.getElementById('collapse-all').addEventListener('click', function () {
    items.forEach(function (item) { item.open = false; });
  });
  apply();
})();
"""


def csp_hash(source: str) -> str:
    """The CSP source expression allowing exactly this inline <style> or <script> body."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def content_security_policy() -> str:
    """Nothing may load from anywhere: only this page's own style and script run, images only as data:."""
    return (
        f"default-src 'none'; style-src {csp_hash(CSS)}; script-src {csp_hash(JS)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
