"""What every stage is handed: the client, the run settings, the data catalogs, and a failure sink."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulators.outcome_rates import OutcomeRates
from simulators.tool_simulator import ToolSimulator
from simulators.user_simulator import UserSimulator
from synth.catalog import RubricTemplate, Taxonomy
from synth.config import RunConfig
from synth.llm.client import ChatClient
from synth.llm.errors import JsonAnswerError, ModelCallError
from synth.records import Failure, Persona, content_id


def derive_seed(run_seed: int, *parts: object) -> int:
    """A call seed derived from the run seed and the item (a replayed episode derives the same)."""
    digest = hashlib.sha256(repr((run_seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass
class Context:
    client: ChatClient
    run: RunConfig
    taxonomy: Taxonomy
    rubrics: dict[str, RubricTemplate]
    personas: list[Persona]
    outcome_rates: OutcomeRates = field(default_factory=OutcomeRates)
    failures: list[Failure] = field(default_factory=list)
    endpoint_failures: int = 0
    """Items lost to an endpoint failure (not their own fault): a shard with any is not done."""
    unusable_answers: int = 0
    """Items lost to answers that stayed unusable after repairs."""

    def seed_for(self, *parts: object) -> int:
        """A call seed derived from the run seed and the item, so reruns ask the same questions."""
        return derive_seed(self.run.seed, *parts)

    def fail(self, stage: str, item_id: str, reason: str, cause: str = "item") -> None:
        """Record an item a stage could not produce; the funnel counts it."""
        self.failures.append(
            Failure(
                id=content_id(stage, item_id, reason, prefix="fail-"),
                stage=stage,  # type: ignore[arg-type]
                item_id=item_id,
                reason=self.client.redact(reason)[:500],  # no key reaches a record, whatever the text
                at=datetime.now(UTC),
                cause=cause,  # type: ignore[arg-type]
            )
        )

    def fail_call(self, stage: str, item_id: str, exc: ModelCallError) -> None:
        """Record an item lost to a failed model call: the endpoint's failure, never a verdict."""
        if isinstance(exc, JsonAnswerError):
            self.unusable_answers += 1
            self.fail(stage, item_id, str(exc), "answer")
        else:
            self.endpoint_failures += 1
            self.fail(stage, item_id, str(exc), "endpoint")

    def tool_simulator(self) -> ToolSimulator:
        return ToolSimulator(self.client, self.outcome_rates)

    def user_simulator(self) -> UserSimulator:
        return UserSimulator(self.client)
