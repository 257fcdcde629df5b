"""What a model call can fail with. Messages name the role and endpoint, never a key."""

from __future__ import annotations


class ModelCallError(RuntimeError):
    """A call that produced no usable answer."""

    def __init__(self, role: str, message: str) -> None:
        super().__init__(f"[{role}] {message}")
        self.role = role


class EndpointRejected(ModelCallError):
    """400/401/403/404: retrying cannot help; the message says what to fix."""


class RetriesExhausted(ModelCallError):
    """429, 5xx, timeouts or dropped connections outlasted the retry budget."""


class JsonAnswerError(ModelCallError):
    """A JSON answer still invalid after the repair attempts."""
