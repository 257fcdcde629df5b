"""Live import from real MCP servers (the SDK's MCPServer, formerly FastMCP) over stdio and HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mcp_support import http_server, stdio_command
from typer.testing import CliRunner

from synth.cli import app
from synth.mcp import LiveSession, McpServerError, parse_server
from synth.mcp.results import result_text
from synth.store import read_table
from synth.toolrepo.live import import_all

RUNNER = CliRunner()


async def test_stdio_import_pages_past_100_tools_and_keeps_every_field() -> None:
    report, servers = await import_all([], [parse_server(command=stdio_command("catalog.py", "130"))])
    assert list(servers) == ["catalog"]
    assert len(report.accepted) == 130 and not report.rejected  # 4 pages of 40
    first, second = report.accepted[0], report.accepted[1]
    assert first.name == "get_weather_forecast_0" and first.mcp_server == "catalog" and first.source == "mcp"
    assert first.annotations == {"readOnlyHint": True} and first.effect == "read"
    assert second.annotations == {"readOnlyHint": False, "destructiveHint": False} and second.effect == "write"
    assert first.parameters["required"] == ["item_id"] and first.returns["type"] == "object"  # outputSchema kept


async def test_http_import_keeps_titles_and_annotations() -> None:
    with http_server("notes.py") as url:
        report, servers = await import_all([], [parse_server(url=url)])
    assert servers["notes"].url == url
    tools = {spec.name: spec for spec in report.accepted}
    assert set(tools) == {"add_note", "list_notes", "delete_note", "reset_notes"}
    assert tools["add_note"].title == "Add a note" and tools["add_note"].effect == "write"
    assert tools["list_notes"].effect == "read"
    assert tools["delete_note"].annotations == {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True}
    assert all(spec.mcp_server == "notes" for spec in report.accepted)


async def test_http_import_pages_too() -> None:
    with http_server("catalog.py", "101") as url:
        report, _ = await import_all([], [parse_server(url=url)])
    assert len(report.accepted) == 101


@pytest.mark.parametrize(
    ("command", "phrase"),
    [
        ("no-such-mcp-server-binary --flag", "cannot start: command not found (no-such-mcp-server-binary)"),
        (
            f"{sys.executable} -c \"import sys; print('bad token in config', file=sys.stderr); sys.exit(3)\"",
            "(server stderr: bad token in config)",
        ),
        (f"{sys.executable} -c 'import time; time.sleep(30)'", "no session within 1s"),
    ],
)
async def test_a_failing_server_is_one_clear_line(command: str, phrase: str) -> None:
    with pytest.raises(McpServerError) as caught:
        await LiveSession.start(parse_server(command=command, start_timeout_s=1))
    message = str(caught.value)
    assert phrase in message and "\n" not in message and message.startswith("MCP server (stdio")


async def test_an_unreachable_url_is_one_clear_line() -> None:
    from mcp_support import free_port

    with pytest.raises(McpServerError, match=r"^MCP server \(http://127\.0\.0\.1:\d+/mcp\): "):
        await LiveSession.start(parse_server(url=f"http://127.0.0.1:{free_port()}/mcp", start_timeout_s=5))


def test_cli_import_from_a_failing_server_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = RUNNER.invoke(app, ["tools", "import", "--out", str(out), "--mcp-stdio", "no-such-mcp-server-binary"])
    assert result.exit_code == 2
    assert "command not found" in result.output and not out.exists()


def test_cli_import_live_and_files_together(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    fixtures = Path(__file__).parent / "fixtures" / "specs" / "mcp" / "weather_server.json"
    result = RUNNER.invoke(
        app, ["tools", "import", str(fixtures), "--out", str(out), "--mcp-stdio", stdio_command("notes.py")]
    )
    assert result.exit_code == 0, result.output
    assert "[run.mcp_servers.notes]" in result.output and "placed " in result.output
    tools = read_table(out, "tools")
    assert {t.mcp_server for t in tools} == {None, "notes"}  # type: ignore[attr-defined]
    stats = RUNNER.invoke(app, ["tools", "stats", str(out)])
    assert "from live MCP servers" in stats.output and "4 from live MCP servers" in stats.output


async def test_calls_map_content_structured_content_and_is_error() -> None:
    session = await LiveSession.start(parse_server(command=stdio_command("notes.py", "--slow"), call_timeout_s=1))
    try:
        added = result_text(await session.call_tool("add_note", {"title": "milk"}))
        assert added == (json.dumps({"id": "n1", "title": "milk"}), True)
        text, ok = result_text(await session.call_tool("delete_note", {"note_id": "nope"}))
        assert not ok and json.loads(text)["error"] == "tool_error"
        with pytest.raises(McpServerError, match="tools/call slow_lookup timed out after 1s"):
            await session.call_tool("slow_lookup", {"seconds": 5})
    finally:
        await session.close()
