"""`synth report`: figures that agree with `synth stats`, a page that loads nothing from anywhere, model
text escaped, clean errors, and the page as headless Chromium renders it (charts, conversations, no
console errors, no request leaving the file)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from html import unescape
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from typer.testing import CliRunner, Result

from synth.cli import app
from synth.records import CriterionScore, FunctionCall, Message, ToolCall, Trajectory, Verdict
from synth.report import build_report, collect
from synth.report.conversation import render_trajectory
from synth.report.figures import normalised
from synth.report.samples import SampleTrajectory
from synth.stats import funnel
from synth.store import open_catalog, read_table, write_shard

CHROMIUM = Path("/usr/bin/chromium")
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"))
PAYLOAD = "<script>alert(1)</script>"
ATTRIBUTE_BREAKER = '"><img src=x onerror=alert(2)>'


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, "SYNTH_RUNNER": "inline"})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    result = invoke("generate", "--out", str(out), "--tasks", "24", "--seed", "4", "-q")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def report(run: Path) -> Path:
    target = run.parent / "report.html"
    result = invoke("report", str(run), "--to", str(target))
    assert result.exit_code == 0, result.output
    assert str(target) in result.stdout
    return target


# ---------------------------------------------------------------- figures


def test_figures_agree_with_stats(run: Path) -> None:
    data = collect(run, per_outcome=5, top=50)
    stats = funnel(run)
    for key in ("tools", "agents", "tasks", "trajectories", "judged", "accepted", "rejected"):
        assert data.funnel[key] == stats[key], key
    assert stats["judged"] > 0 and stats["accepted"] > 0 and stats["rejected"] > 0
    by_kind = {g.name: (g.tasks, g.accepted, g.rejected) for g in data.by_kind.groups}
    assert by_kind == {row["kind"]: (row["tasks"], row["accepted"], row["rejected"]) for row in stats["by_rubric_kind"]}
    for breakdown in (data.by_category, data.by_domain):
        assert sum(g.tasks for g in breakdown.groups) == stats["tasks"]  # top 50 holds every group here
        assert sum(g.accepted for g in breakdown.groups) == stats["accepted"]

    agreement = stats["judge_check_agreement"]
    assert (data.agreement.judged, data.agreement.agree) == (agreement["judged"], agreement["agree"])
    assert data.agreement.judge_only == agreement["judge_passed_checks_failed"]
    assert data.agreement.rate is not None and round(data.agreement.rate, 3) == agreement["rate"]

    assert sum(sum(b.counts) for b in data.scores) == stats["judged"]
    assert sum(b.counts[0] for b in data.scores) == stats["accepted"]
    assert sum(sum(b.counts) for b in data.turns.bins) == stats["trajectories"]
    assert sum(sum(b.counts) for b in data.tool_calls.bins) == stats["trajectories"]

    coverage = data.coverage
    assert coverage.share_called is not None and 0.0 <= coverage.share_called <= 1.0
    assert 0 < coverage.called <= coverage.offered
    assert coverage.most_used[0].calls >= coverage.least_used[0].calls
    assert sum(r.count for r in data.rejection_reasons) >= stats["rejected"]

    diversity = data.diversity
    assert diversity.sample == stats["tasks"]  # fewer tasks than the sample size: all of them
    assert diversity.near_duplicate_rate is not None and 0.0 <= diversity.near_duplicate_rate <= 1.0
    assert sum(b.counts[0] for b in diversity.nearest) == diversity.sample
    assert 1.0 <= (diversity.effective_categories or 0) <= diversity.categories

    assert len(data.samples) == 5 + min(5, stats["rejected"])
    assert [s.accepted for s in data.samples] == sorted((s.accepted for s in data.samples), reverse=True)
    assert data.costs.tokens == stats["tokens"]
    assert data.costs.k2_usd == pytest.approx(stats["cost_usd_at_k2_prices"], abs=1e-4)


def test_tool_calls_counted_in_sql_match_the_records(run: Path) -> None:
    trajectories = cast(list[Trajectory], read_table(run, "trajectories"))
    calls = sum(len(m.tool_calls) for t in trajectories for m in t.messages)
    data = collect(run, per_outcome=0)
    offered_names = {(t.id, spec.name) for t in trajectories for spec in t.tools}
    to_offered = sum(
        1 for t in trajectories for m in t.messages for c in m.tool_calls if (t.id, c.function.name) in offered_names
    )
    assert data.coverage.calls == to_offered
    assert data.coverage.offered == len({spec.id for t in trajectories for spec in t.tools})
    called = {(t.id, c.function.name) for t in trajectories for m in t.messages for c in m.tool_calls}
    ever_called = {spec.id for t in trajectories for spec in t.tools if (t.id, spec.name) in called}
    assert data.coverage.called == len(ever_called)
    assert data.coverage.calls + data.coverage.calls_to_unoffered == calls
    mean_calls = calls / len(trajectories)
    assert data.tool_calls.mean == pytest.approx(mean_calls)
    assert data.samples == []


def test_reasons_are_normalised(run: Path) -> None:
    con = open_catalog(run)
    try:

        def norm(text: str) -> str:
            literal = "'" + text.replace("'", "''") + "'"
            return str(con.sql(f"SELECT {normalised(literal)}").fetchall()[0][0])

        assert norm("rubric score 0.57 below threshold 0.70") == "rubric score N below threshold N"
        assert norm("check failed: expected_tools_covered (never succeeded: ['a', 'b'])") == norm(
            "check failed: expected_tools_covered (never succeeded: ['get_x'])"
        )
        assert norm("unparseable arguments for get_x (call functions.get_x:1): Expecting value") == norm(
            "unparseable arguments for put_y (call functions.put_y:0): Expecting value"
        )
        assert norm("item tsk-0123abcd4567ef89 missing") == "item tsk-<id> missing"
    finally:
        con.close()


# ---------------------------------------------------------------- the page


def test_page_loads_nothing_from_anywhere(report: Path) -> None:
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""\b(?:src|href|action|xlink:href|srcset|poster)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"https?://", html.split("<body>")[0])  # head: no external style, font or script
    for value in re.findall(r"""\bhref\s*=\s*["']([^"']*)["']""", html):
        assert value.startswith(("#", "data:")), value
    assert re.findall(r"<script\b[^>]*>", html) == ["<script>"]  # one script, inline
    assert "@import" not in html and "url(" not in html
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert policy and unescape(policy.group(1)).startswith("default-src 'none';")
    assert html.count('<svg class="chart"') >= 10
    assert 'class="traj"' in html and 'class="msg user"' in html and 'class="call"' in html


def test_model_text_is_escaped_in_the_page(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    base = cast(list[Trajectory], read_table(copy, "trajectories"))[0]
    verdict = next(v for v in cast(list[Verdict], read_table(copy, "verdicts")) if v.trajectory_id == base.id)
    call = ToolCall(id=f"functions.evil:0{ATTRIBUTE_BREAKER}", function=FunctionCall(name=PAYLOAD, arguments=PAYLOAD))
    evil = base.model_copy(
        update={
            "id": "traj-evil",
            "messages": [
                Message(role="system", content=PAYLOAD),
                Message(role="user", content=f"please {PAYLOAD} {ATTRIBUTE_BREAKER}"),
                Message(role="assistant", content=None, reasoning_content=PAYLOAD, tool_calls=[call]),
                Message(role="tool", content=json.dumps({"result": PAYLOAD}), tool_call_id=call.id),
                Message(role="assistant", content=PAYLOAD),
            ],
            "errors": [PAYLOAD],
        }
    )
    evil_verdict = verdict.model_copy(
        update={
            "trajectory_id": "traj-evil",
            "accepted": False,
            "scores": [CriterionScore(name=PAYLOAD, score=0.1, rationale=PAYLOAD)],
            "reasons": [PAYLOAD],
        }
    )
    write_shard(copy, "trajectories", "zz-evil", [evil])
    write_shard(copy, "verdicts", "zz-evil", [evil_verdict])
    target = tmp_path / "report.html"
    result = build_report(copy, target, per_outcome=1000)
    html = target.read_text()
    assert result.sampled == funnel(copy)["judged"]
    assert "traj-evil" in html
    assert PAYLOAD not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1


def test_conversation_renderer_escapes_every_field() -> None:
    sample = SampleTrajectory(
        id=ATTRIBUTE_BREAKER,
        messages=[
            {"role": "user", "content": PAYLOAD},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": ATTRIBUTE_BREAKER, "function": {"name": PAYLOAD, "arguments": '{"q": "<b>"}'}}],
            },
            {"role": "tool", "content": "not json " + PAYLOAD, "tool_call_id": ATTRIBUTE_BREAKER},
            {"role": ATTRIBUTE_BREAKER, "content": PAYLOAD},
        ],
        tools=[PAYLOAD],
        stop_reason=PAYLOAD,
        errors=[PAYLOAD],
        accepted=True,
        score=0.9,
        scores=[{"name": PAYLOAD, "score": 0.9, "rationale": PAYLOAD}],
        checks=[{"name": PAYLOAD, "passed": False, "detail": PAYLOAD}],
        reasons=[PAYLOAD],
        rubric_kind=PAYLOAD,
        judge_model=PAYLOAD,
        prompt=ATTRIBUTE_BREAKER,
        persona={"name": PAYLOAD},
        domain=ATTRIBUTE_BREAKER,
    )
    html = render_trajectory(sample)
    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;script&gt;") >= 10
    assert 'data-text="&quot;&gt;&lt;img' in html  # attribute values cannot be broken out of
    assert "&quot;q&quot;: &quot;&lt;b&gt;&quot;" in html  # arguments pretty-printed, then escaped


# ---------------------------------------------------------------- the command


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = invoke("report", str(tmp_path), "--to", str(tmp_path / "report.html"))
    assert result.exit_code == 2
    assert "not a synth run folder" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_refuses_a_missing_target_folder(run: Path, tmp_path: Path) -> None:
    result = invoke("report", str(run), "--to", str(tmp_path / "missing" / "report.html"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_replaces_the_file_atomically(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    result = build_report(run, target, per_outcome=2, top=3)
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert result.bytes == target.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


# ---------------------------------------------------------------- in a real browser


def test_report_renders_in_headless_chromium(report: Path, run: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)")
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            # Belt and braces: even an attempted request could not reach anything.
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _devtools_port(profile, browser)
        page, events = asyncio.run(_visit(port, report.as_uri()))
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()

    problems = [e for e in events if _is_problem(e)]
    assert problems == [], json.dumps(problems, indent=1)[:3000]
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests

    stats = funnel(run)
    assert page["charts"] >= 10 and page["bars"] > 20
    assert page["conversations"] == min(20, stats["accepted"]) + min(20, stats["rejected"])
    assert page["user_messages"] > 0 and page["tool_calls"] > 0 and page["criteria_rows"] > 0
    assert page["counter"] == f"{page['conversations']} of {page['conversations']} shown"  # the script ran
    assert page["rejected_shown"] == min(20, stats["rejected"])  # the filter works
    assert page["opened"] is True


def _devtools_port(profile: Path, browser: subprocess.Popen[bytes]) -> int:
    """Chromium writes the port it picked (for --remote-debugging-port=0) into the profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            pytest.fail(f"chromium exited early with {browser.returncode}")
        if marker.is_file():
            lines = marker.read_text().splitlines()
            if lines and lines[0].isdigit():
                return int(lines[0])
        time.sleep(0.05)
    pytest.fail("chromium did not open its DevTools port")


def _is_problem(event: dict[str, Any]) -> bool:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.exceptionThrown":
        return True
    if method == "Runtime.consoleAPICalled":
        return params.get("type") in ("error", "assert", "warning")
    if method == "Log.entryAdded":
        return params.get("entry", {}).get("level") in ("error", "warning")
    return method == "Network.loadingFailed"


_PAGE_FACTS = """
(() => {
  const count = (selector) => document.querySelectorAll(selector).length;
  const facts = {
    charts: count('svg.chart'),
    bars: count('svg.chart rect'),
    conversations: count('details.traj'),
    user_messages: count('details.traj .msg.user'),
    tool_calls: count('details.traj .call pre.json'),
    criteria_rows: count('details.traj .verdict tbody tr'),
    counter: document.getElementById('sample-count').textContent,
  };
  document.querySelector('button[data-filter="rejected"]').click();
  facts.rejected_shown = Array.from(document.querySelectorAll('details.traj')).filter(d => !d.hidden).length;
  document.querySelector('button[data-filter="all"]').click();
  document.getElementById('expand-all').click();
  facts.opened = document.querySelector('details.traj').open;
  return facts;
})()
"""


async def _visit(port: int, url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Open `url` in a new tab over the DevTools protocol, with console, log and network events on;
    return facts read from the rendered page and every event seen."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/version") as response:
            endpoint = (await response.json())["webSocketDebuggerUrl"]
        async with http.ws_connect(endpoint, max_msg_size=0) as ws:
            cdp = _Cdp(ws)
            reader = asyncio.create_task(cdp.read())
            try:
                target = await cdp.call("Target.createTarget", {"url": "about:blank"})
                session = (await cdp.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))[
                    "sessionId"
                ]
                for domain in ("Runtime", "Log", "Network", "Page"):
                    await cdp.call(f"{domain}.enable", session=session)
                cdp.events.clear()  # only what the report's page does
                await cdp.call("Page.navigate", {"url": url}, session=session)
                await asyncio.wait_for(cdp.loaded.wait(), timeout=20)
                await asyncio.sleep(0.3)  # late console messages, if any
                result = await cdp.call(
                    "Runtime.evaluate", {"expression": _PAGE_FACTS, "returnByValue": True}, session=session
                )
                if "exceptionDetails" in result:
                    pytest.fail(f"page facts script failed: {result['exceptionDetails']}")
                await asyncio.sleep(0.2)
                return result["result"]["value"], list(cdp.events)
            finally:
                reader.cancel()


class _Cdp:
    """A minimal Chrome DevTools Protocol client: numbered calls, events collected as they arrive."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()

    async def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout=20)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if "id" in message and message["id"] in self.pending:
                self.pending.pop(message["id"]).set_result(message)
            elif "method" in message:
                self.events.append({"method": message["method"], "params": message.get("params", {})})
                if message["method"] == "Page.loadEventFired":
                    self.loaded.set()
