"""The offline model: a deterministic OpenAI-compatible server that plays every role.

`FaultConfig` is part of every run's config, so it is imported eagerly; the server and its answer
generators (Starlette, the per-role answers) load when first asked for, so that reading a config
(as `synth stats` or `synth query` do) does not pay for the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from synth.llm.offline.faults import FaultConfig

if TYPE_CHECKING:
    from synth.llm.offline.app import OfflineModel
    from synth.llm.offline.bench import BenchConfig

__all__ = ["BenchConfig", "FaultConfig", "OfflineModel"]


def __getattr__(name: str) -> object:
    if name == "OfflineModel":
        from synth.llm.offline.app import OfflineModel

        return OfflineModel
    if name == "BenchConfig":
        from synth.llm.offline.bench import BenchConfig

        return BenchConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
