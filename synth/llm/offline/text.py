"""Small text helpers the offline model uses to read prompts the way a model would skim them."""

from __future__ import annotations

import json
import re
from typing import Any

WORD = re.compile(r"[a-z0-9]+")
FIELD = re.compile(r"^(?P<key>[A-Z][A-Za-z ]{1,40}):[ \t]*(?P<value>.*)$", re.MULTILINE)
JSON_BLOCK = re.compile(r"```json\s*(?P<body>.*?)```", re.DOTALL)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def name_words(name: str) -> list[str]:
    """`get_order-status.v2` -> ['get', 'order', 'status', 'v2']."""
    return words(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " "))


def fields(text: str) -> dict[str, str]:
    """The `Key: value` lines of a prompt (first occurrence of each key wins)."""
    found: dict[str, str] = {}
    for match in FIELD.finditer(text):
        found.setdefault(match["key"].strip().lower(), match["value"].strip())
    return found


def json_field(text: str, key: str) -> Any:
    """A `Key: {json}` line parsed, or None when absent or not JSON."""
    raw = fields(text).get(key.lower())
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def json_blocks(text: str) -> list[Any]:
    """Every fenced ```json block that parses."""
    out = []
    for match in JSON_BLOCK.finditer(text):
        try:
            out.append(json.loads(match["body"]))
        except json.JSONDecodeError:
            continue
    return out


def humanize(name: str) -> str:
    return " ".join(name_words(name))
