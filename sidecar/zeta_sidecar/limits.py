"""Per-tenant rate limits: token buckets for requests per second and tokens per minute.

Pure: time is passed in. Each gateway replica enforces ``1/N`` of every limit (``N`` is
``traffic.gatewayReplicas``), so N replicas together allow the declared rate without
talking to each other; clients spread over replicas by a Service see the declared
limit within the imbalance of that spread.

Tokens are estimated before a request is sent (its body's bytes over 4, plus the
``max_tokens`` it asks for) and corrected when the pod reports the usage
(:class:`Usage`): the bucket may go into debt, so a tenant that under-declares pays on
its next requests.
"""

import math
import re
from dataclasses import dataclass

from zeta_api import Tenant

__all__ = ["BYTES_PER_TOKEN", "Refusal", "TenantLimits", "TokenBucket", "Usage"]

BYTES_PER_TOKEN = 4
"""A prompt's tokens, estimated from its body: about 4 bytes a token for English text
with most tokenizers, and JSON overhead makes it err on the side of counting more."""

_TOTAL_TOKENS = re.compile(rb'"total_tokens"\s*:\s*(\d{1,12})')


class TokenBucket:
    """``rate`` units per second, at most ``burst`` saved up; may go into debt."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now); takes nothing."""
        self._refill(now)
        need = min(amount, self.burst) - self.level  # a request larger than the burst
        return 0.0 if need <= 0 else need / self.rate  # waits only for a full bucket

    def take(self, amount: float, now: float) -> None:
        """Take ``amount`` (the level may fall below zero: debt)."""
        self._refill(now)
        self.level -= amount

    def give_back(self, amount: float) -> None:
        """Return ``amount`` (an estimate above the real use); never above the burst."""
        self.level = min(self.burst, self.level + amount)

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, math.floor(self.level))

    def reset_in(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return max(0.0, (self.burst - self.level) / self.rate)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is over its tenant's limit, and what to tell the client."""

    kind: str
    """``requests`` or ``tokens``, as OpenAI's error ``type`` says."""
    retry_after: float
    headers: dict[str, str]


def _seconds(value: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` form: ``1s``, ``6m0s``, ``120ms``."""
    if value < 1:
        return f"{max(1, round(value * 1000))}ms"
    minutes, seconds = divmod(math.ceil(value), 60)
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


class TenantLimits:
    """One tenant's buckets in this replica (its share of the declared limits)."""

    __slots__ = ("replicas", "requests", "tenant", "tokens")

    def __init__(self, tenant: Tenant, replicas: int, now: float) -> None:
        self.tenant = tenant
        self.replicas = replicas
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None
        if tenant.requests_per_second is not None:
            declared = tenant.requests_per_second
            burst = tenant.burst if tenant.burst is not None else max(1.0, declared)
            self.requests = TokenBucket(declared / replicas, max(1.0, burst / replicas), now)
        if tenant.tokens_per_minute is not None:
            per_minute = tenant.tokens_per_minute / replicas
            self.tokens = TokenBucket(per_minute / 60.0, per_minute, now)

    def admit(self, tokens: int, now: float) -> Refusal | None:
        """Take one request and ``tokens`` estimated tokens, or say why not (takes none)."""
        waits = []
        if self.requests is not None:
            waits.append(("requests", self.requests.wait_for(1, now)))
        if self.tokens is not None:
            waits.append(("tokens", self.tokens.wait_for(tokens, now)))
        over = [(kind, wait) for kind, wait in waits if wait > 0]
        if over:
            kind, wait = max(over, key=lambda item: item[1])
            return Refusal(kind, wait, self.headers(now))
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        return None

    def settle(self, estimated: int, used: int, now: float) -> None:
        """Correct an estimate by the usage the pod reported."""
        if self.tokens is None or used == estimated:
            return
        if used > estimated:
            self.tokens.take(used - estimated, now)
        else:
            self.tokens.give_back(estimated - used)

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for this replica's share."""
        out: dict[str, str] = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                # Per minute, as OpenAI states both limits.
                out[f"x-ratelimit-limit-{kind}"] = str(math.floor(bucket.rate * 60))
                out[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining(now))
                out[f"x-ratelimit-reset-{kind}"] = _seconds(bucket.reset_in(now))
        return out


class Usage:
    """A token estimate taken from a tenant's bucket, settled by the usage the pod reports.

    The pod's ``"total_tokens": N`` is found by a byte search, the last one winning
    (OpenAI puts usage at the end of an answer and in a stream's last event); inside a
    JSON string the quotes would be escaped, so content cannot fake it.
    """

    __slots__ = ("estimate", "limits", "used")

    def __init__(self, limits: TenantLimits, estimate: int) -> None:
        self.limits = limits
        self.estimate = estimate
        self.used: int | None = None

    def seen(self, data: bytes) -> None:
        """Look for the usage in a piece of the answer."""
        if b'"total_tokens"' in data:
            found = _TOTAL_TOKENS.findall(data)
            if found:
                self.used = int(found[-1])

    def settle(self, now: float) -> None:
        """The answer is over: correct the bucket by the usage reported, if any."""
        if self.used is not None:
            self.limits.settle(self.estimate, self.used, now)
