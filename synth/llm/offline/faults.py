"""Fault injection for the offline model: what a misbehaving endpoint does, on demand and seeded.

Latency is part of it: a fixed delay per answer, or a lognormal spread around a median (real
endpoints have long tails). The spread is drawn from the request's fingerprint and the latency seed,
not from the order requests arrive in: arrival order under concurrency changes from run to run, the
requests of a seeded run do not, so two runs of the same config (say, on two runners being compared)
meet exactly the same latency per call. The price: a retried identical request waits as long again.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Fault = Literal[
    "ok",
    "rate_limit",  # 429 without Retry-After
    "rate_limit_retry_after",  # 429 with Retry-After
    "server_error",  # 500
    "timeout",  # answers only after the client gave up
    "drop",  # closes the connection without an answer
    "unauthorized",  # 401
    "malformed_json",  # JSON-mode answer that is not JSON
    "bad_arguments",  # tool call whose arguments are not JSON
    "unknown_tool",  # tool call naming a tool that was not offered
    "truncated",  # finish_reason "length", answer cut short
]


_STANDARD_NORMAL = NormalDist()


class FaultConfig(BaseModel):
    """Rates (0..1) of each fault per request, plus an exact script for the first requests."""

    model_config = ConfigDict(extra="forbid")

    rate_limit: float = Field(default=0.0, ge=0, le=1)
    rate_limit_retry_after: float = Field(default=0.0, ge=0, le=1)
    server_error: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    drop: float = Field(default=0.0, ge=0, le=1)
    malformed_json: float = Field(default=0.0, ge=0, le=1)
    bad_arguments: float = Field(default=0.0, ge=0, le=1)
    unknown_tool: float = Field(default=0.0, ge=0, le=1)
    truncated: float = Field(default=0.0, ge=0, le=1)
    script: list[Fault] = Field(default_factory=list, description="faults for the first requests, in order")
    retry_after_s: float = Field(default=0.05, ge=0, description="value sent in Retry-After")
    timeout_s: float = Field(default=5.0, ge=0, description="how long a 'timeout' request hangs")
    latency_s: float = Field(
        default=0.0, ge=0, description="added to every answer; with latency_sigma > 0, the median of the spread"
    )
    latency_sigma: float = Field(
        default=0.0, ge=0, le=3, description="lognormal sigma of the latency around its median; 0: fixed"
    )
    latency_seed: int = Field(default=0, description="seed of the latency draws (with each request's fingerprint)")
    seed: int = 0

    @model_validator(mode="after")
    def _rates_at_most_one(self) -> FaultConfig:
        total = sum(self.rates().values())
        if total > 1:
            raise ValueError(f"fault rates add up to {total:.2f}; they must not exceed 1")
        return self

    def latency_for(self, request: bytes) -> float:
        """Seconds to hold the answer to `request` (its raw body): fixed when the sigma is 0, else
        median * exp(sigma * z) with z standard normal, a function of the body and the latency seed."""
        if not self.latency_s or not self.latency_sigma:
            return self.latency_s
        digest = hashlib.blake2b(request, digest_size=8, key=str(self.latency_seed).encode()).digest()
        # 52 bits of the digest as a uniform draw strictly inside (0, 1) (the midpoint of one of 2**52
        # equal cells, exact in a double), then the normal quantile of it.
        uniform = (2 * (int.from_bytes(digest, "big") >> 12) + 1) / 2**53
        return self.latency_s * math.exp(self.latency_sigma * _STANDARD_NORMAL.inv_cdf(uniform))

    def rates(self) -> dict[Fault, float]:
        return {
            "rate_limit": self.rate_limit,
            "rate_limit_retry_after": self.rate_limit_retry_after,
            "server_error": self.server_error,
            "timeout": self.timeout,
            "drop": self.drop,
            "malformed_json": self.malformed_json,
            "bad_arguments": self.bad_arguments,
            "unknown_tool": self.unknown_tool,
            "truncated": self.truncated,
        }


class FaultPlan:
    """Draws the fault of each request: the script first, then the seeded rates."""

    def __init__(self, config: FaultConfig) -> None:
        self._config = config
        self._script: deque[Fault] = deque(config.script)
        self._rng = random.Random(config.seed)

    @property
    def config(self) -> FaultConfig:
        return self._config

    def next(self) -> Fault:
        if self._script:
            return self._script.popleft()
        draw = self._rng.random()
        for fault, rate in self._config.rates().items():
            if draw < rate:
                return fault
            draw -= rate
        return "ok"
