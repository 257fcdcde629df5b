"""What a model call can fail with. Messages name the role and endpoint, never a key.

Every failure of a model call is a `ModelCallError`, and every `ModelCallError` is about the
endpoint, not about the item that was being made: the item is recorded in `failures` and is never
judged as if the model had answered. Whether the endpoint itself looks down is the circuit
breaker's question (`trips_breaker`): transport failures count towards it, a JSON answer that
stayed invalid does not (the endpoint answered; the answer was bad).
"""

from __future__ import annotations

from synth.records import Usage


class ModelCallError(RuntimeError):
    """A call that produced no usable answer."""

    trips_breaker = False
    """Whether this failure says the endpoint may be down (counted by the circuit breaker)."""

    def __init__(self, role: str, message: str, usage: Usage | None = None) -> None:
        super().__init__(f"[{role}] {message}")
        self.role = role
        self.message = message
        self.usage = usage or Usage()
        """What the failed attempts cost (e.g. the invalid JSON answers before giving up)."""

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (Ray workers): rebuilt from their own fields, not `args`.
        return (_rebuild, (type(self), self.role, self.message, self.usage, self.__dict__))


class EndpointRejected(ModelCallError):
    """400/401/403/404/422: retrying cannot help; the message says what to fix."""

    trips_breaker = True

    def __init__(self, role: str, message: str, usage: Usage | None = None, status: int | None = None) -> None:
        super().__init__(role, message, usage)
        self.status = status
        """The HTTP status the endpoint answered (401, 404, ...), when there was one."""


class RetriesExhausted(ModelCallError):
    """429, 5xx, timeouts, dropped connections or unusable responses outlasted the retry budget.

    Unusable: bytes that are not HTTP, a 200 that is not a readable chat completion (an HTML page,
    JSON of the wrong shape). A timeout is the request's total deadline (`timeout_s` for connect,
    headers and body together). The message names what went wrong last, in the client's words."""

    trips_breaker = True


class JsonAnswerError(ModelCallError):
    """A JSON answer still invalid after the repair attempts."""


def _rebuild(
    kind: type[ModelCallError], role: str, message: str, usage: Usage, state: dict[str, object]
) -> ModelCallError:
    error = ModelCallError.__new__(kind)
    ModelCallError.__init__(error, role, message, usage)
    error.__dict__.update(state)
    return error


class EndpointDown(ModelCallError):
    """The endpoint's circuit breaker is open: the call was not sent. The run is stopping."""

    trips_breaker = True
