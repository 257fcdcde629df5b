"""A tools/call result as the tool message the policy reads."""

from __future__ import annotations

import json
from typing import Any


def result_text(result: Any) -> tuple[str, bool]:
    """(tool message content, ok) of a CallToolResult: its structured content as JSON when it has one,
    else its content blocks as text; `isError` becomes an error result in the simulator's shape."""
    ok = not bool(getattr(result, "is_error", False))
    structured = getattr(result, "structured_content", None)
    text = "\n".join(_block_text(block) for block in getattr(result, "content", None) or [])
    if not ok:
        return json.dumps({"error": "tool_error", "message": text or "the tool reported an error"}), False
    if structured is not None:
        return json.dumps(structured, ensure_ascii=False, default=str), True
    return text, True


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(getattr(block, "text", ""))
    if kind in ("image", "audio"):
        return f"[{kind}: {getattr(block, 'mime_type', None) or 'binary'}]"
    if kind == "resource":
        resource = getattr(block, "resource", None)
        return str(getattr(resource, "text", None) or f"[resource: {getattr(resource, 'uri', '')}]")
    if kind == "resource_link":
        return f"[resource: {getattr(block, 'uri', '')}]"
    return (
        json.dumps(block.model_dump(by_alias=True, mode="json", exclude_none=True))
        if hasattr(block, "model_dump")
        else str(block)
    )
