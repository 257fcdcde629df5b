"""What a model call can fail with. Messages name the role and endpoint, never a key."""

from __future__ import annotations

from synth.records import Usage


class ModelCallError(RuntimeError):
    """A call that produced no usable answer."""

    def __init__(self, role: str, message: str, usage: Usage | None = None) -> None:
        super().__init__(f"[{role}] {message}")
        self.role = role
        self.usage = usage or Usage()
        """What the failed attempts cost (e.g. the invalid JSON answers before giving up)."""


class EndpointRejected(ModelCallError):
    """400/401/403/404: retrying cannot help; the message says what to fix."""


class RetriesExhausted(ModelCallError):
    """429, 5xx, timeouts or dropped connections outlasted the retry budget."""


class JsonAnswerError(ModelCallError):
    """A JSON answer still invalid after the repair attempts."""
