"""A circuit breaker per endpoint: a run stops asking an endpoint that is down.

Without it an unreachable judge turns every trajectory into a failure after a full retry budget
each, and a long run spends hours learning what its first minute already said. The breaker opens
when the endpoint refuses the key or the model (401, 403, 404: no retry can fix that), or after
`threshold` calls in a row failed for transport reasons (each already retried with backoff). Once
open it stays open: every later call fails at once with `EndpointDown`, naming the first reason,
and the runner stops the run (finished shards kept; `--resume` redoes the rest).

A JSON answer that stayed invalid does not count (the endpoint answered), and any success closes
the streak. Pure bookkeeping: no clock, no I/O, one instance per endpoint and process.
"""

from __future__ import annotations

from synth.llm.errors import EndpointDown, EndpointRejected, ModelCallError

FATAL_STATUSES = frozenset({401, 403, 404})
"""Answers that say every call will fail the same way: the breaker opens at the first one."""


class CircuitBreaker:
    """Counts an endpoint's consecutive transport failures; open means the run must stop."""

    def __init__(self, endpoint: str, threshold: int = 3) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {threshold}")
        self.endpoint = endpoint
        self.threshold = threshold
        self.streak = 0
        self.reason: str | None = None
        """Why the breaker opened (the failure that opened it); None while closed."""

    @property
    def open(self) -> bool:
        return self.reason is not None

    def check(self, role: str) -> None:
        """Raise EndpointDown when open: the call is not sent."""
        if self.reason is not None:
            raise EndpointDown(role, f"{self.endpoint} is down, not calling it again: {self.reason}")

    def on_success(self) -> None:
        self.streak = 0

    def on_failure(self, exc: ModelCallError) -> bool:
        """Count a failed call; True when this failure opened the breaker."""
        if not exc.trips_breaker or isinstance(exc, EndpointDown) or self.reason is not None:
            return False
        fatal = isinstance(exc, EndpointRejected) and exc.status in FATAL_STATUSES
        self.streak += 1
        if fatal or self.streak >= self.threshold:
            reason = str(exc)
            self.reason = reason if fatal else f"{self.streak} calls in a row failed; the last: {reason}"
            return True
        return False
