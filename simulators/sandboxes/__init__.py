"""Executable sandboxes: environments with real state whose tools are declared as `ToolSpec`s.

`SANDBOXES` maps a sandbox name to its factory `(root, initial_state) -> Sandbox`. A task's end state
is checked with `matches_expected` (replay the expected actions on a fresh sandbox, compare hashes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulators.sandboxes.base import Sandbox, SandboxFactory, ToolError, matches_expected, replay
from simulators.sandboxes.calendar import CalendarSandbox
from simulators.sandboxes.filesystem import FileSystemSandbox
from simulators.sandboxes.shop import ShopSandbox

SANDBOXES: dict[str, Callable[[Path, dict[str, Any]], Sandbox]] = {
    FileSystemSandbox.name: FileSystemSandbox,
    CalendarSandbox.name: CalendarSandbox,
    ShopSandbox.name: ShopSandbox,
}

__all__ = [
    "SANDBOXES",
    "CalendarSandbox",
    "FileSystemSandbox",
    "Sandbox",
    "SandboxFactory",
    "ShopSandbox",
    "ToolError",
    "matches_expected",
    "replay",
]
