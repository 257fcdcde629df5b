"""Opt-in: a tiny run against a real endpoint. Skipped unless SYNTH_LIVE=1 and the key is set."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from synth.config import load_config
from synth.run_folder import prepare_run_folder
from synth.runners.driver import generate
from synth.stats import funnel

pytestmark = pytest.mark.live


@pytest.mark.skipif(
    os.environ.get("SYNTH_LIVE") != "1" or not os.environ.get("MOONSHOT_API_KEY"),
    reason="live endpoint test: set SYNTH_LIVE=1 and MOONSHOT_API_KEY",
)
def test_kimi_k2_tiny_run(tmp_path: Path) -> None:
    config = load_config(None, os.environ, {"preset": "kimi-k2", "run.tasks": 2, "run.domains": 1})
    run_dir = prepare_run_folder(tmp_path / "run", config)
    asyncio.run(generate(config, run_dir, os.environ))
    figures = funnel(run_dir)
    assert figures["tasks"] >= 1
    assert figures["unaccounted_tasks"] == 0
    assert figures["usage"]["policy"]["calls"] >= 1
