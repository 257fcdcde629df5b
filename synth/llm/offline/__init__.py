"""The offline model: a deterministic OpenAI-compatible server that plays every role."""

from synth.llm.offline.app import OfflineModel
from synth.llm.offline.bench import BenchConfig
from synth.llm.offline.faults import FaultConfig

__all__ = ["BenchConfig", "FaultConfig", "OfflineModel"]
