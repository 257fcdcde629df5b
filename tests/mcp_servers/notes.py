"""A stateful notes server for the tests (MCP SDK 2.x `MCPServer`, the former FastMCP).

Run: `python notes.py [--slow]` (stdio) or `python notes.py [--slow] http PORT`. State lives in the process, so a fresh
process starts empty; `reset_notes` empties it for servers kept across episodes.
"""

from __future__ import annotations

import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("notes")
NOTES: dict[str, dict[str, str]] = {}


@server.tool(title="Add a note", annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
def add_note(title: str, body: str = "") -> dict[str, str]:
    """Store a new note with a title and a body; returns its id."""
    note_id = f"n{len(NOTES) + 1}"
    NOTES[note_id] = {"title": title, "body": body}
    return {"id": note_id, "title": title}


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def list_notes() -> dict[str, list[dict[str, str]]]:
    """List every stored note with its id and title."""
    return {"notes": [{"id": key, "title": note["title"]} for key, note in sorted(NOTES.items())]}


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True))
def delete_note(note_id: str) -> str:
    """Delete the note with this id."""
    if note_id not in NOTES:
        raise ValueError(f"no note {note_id}")
    del NOTES[note_id]
    return f"deleted {note_id}"


@server.tool()
def reset_notes() -> str:
    """Forget every note (used between episodes)."""
    NOTES.clear()
    return "reset"


def slow_lookup(seconds: float) -> str:
    """Wait this many seconds, then answer (to test call time-outs)."""
    time.sleep(seconds)
    return "late"


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--slow" in args:  # only on request: a rollout's model would otherwise call it with any number
        args.remove("--slow")
        server.tool(annotations=ToolAnnotations(readOnlyHint=True))(slow_lookup)
    if args and args[0] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(args[1]))
    else:
        server.run()
