"""What one tenant may take of the API: requests in progress, a request rate, bulk sizes.

    per tenant, on /v1/calculations...     beyond it
    tenant_max_in_progress requests        429 ``quota_exceeded``, Retry-After
    tenant_rate_per_s (tenant_burst)       429 ``rate_limited``, Retry-After: when a token is
                                           back (submits, batches and WebSocket submits alike)
    tenant_max_batch_items per batch       422 for JSON arrays and .npy bodies; an NDJSON
                                           stream is cut there (its summary says so)

The tenant is the caller's key's (``auth``); on an API without keys every caller is the same
tenant, so these become limits on the whole API. Every quota is off (None) by default. A
refused request is answered before its body is read and costs the tenant nothing; the counts
live here, on the one event loop, without locks. Quotas are per replica: N replicas behind a
load balancer let a tenant have N times each figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from producer_api.admission import GUARDED
from producer_api.auth import OPEN, Principal
from producer_api.errors import ApiError, RateLimited
from producer_api.responses import send_error
from producer_api.settings import ApiSettings
from producer_api.stats import ApiStats


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Quotas:
    """The per-tenant counts and buckets, and the checks against them."""

    def __init__(self, settings: ApiSettings, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.max_in_progress = settings.tenant_max_in_progress
        self.rate = settings.tenant_rate_per_s
        self.burst = float(settings.tenant_burst or max(1.0, self.rate or 1.0))
        self.max_batch_items = settings.tenant_max_batch_items
        self.clock = clock
        self.in_progress: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def active(self) -> bool:
        """Any per-request quota is set."""
        return self.max_in_progress is not None or self.rate is not None

    def take(self, tenant: str) -> None:
        """One request of ``tenant``'s against its rate; ``RateLimited`` beyond it."""
        if self.rate is None:
            return
        bucket = self._buckets.get(tenant)
        now = self.clock()
        if bucket is None:
            bucket = self._buckets[tenant] = TokenBucket(self.rate, self.burst, self.burst, now)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(f"this tenant's rate is {self.rate:g} requests/s "
                              f"(burst {self.burst:g}); retry in {wait:.2f} s",
                              retry_after=wait)

    def enter(self, tenant: str) -> None:
        """A request of ``tenant``'s starts; ``RateLimited`` if it has too many in progress."""
        held = self.in_progress.get(tenant, 0)
        if self.max_in_progress is not None and held >= self.max_in_progress:
            raise RateLimited(f"this tenant has {held} requests in progress, its limit",
                              code="quota_exceeded", retry_after=1.0)
        self.in_progress[tenant] = held + 1

    def leave(self, tenant: str) -> None:
        """A request of ``tenant``'s is answered."""
        held = self.in_progress.get(tenant, 1) - 1
        if held:
            self.in_progress[tenant] = held
        else:
            self.in_progress.pop(tenant, None)


class QuotaGate:
    """ASGI middleware behind ``Authentication``: each tenant's in-progress and rate quotas on
    ``/v1/calculations``."""

    def __init__(self, app: ASGIApp, quotas: Quotas, stats: ApiStats) -> None:
        self.app = app
        self.quotas = quotas
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (not self.quotas.active or scope["type"] != "http"
                or not scope["path"].startswith(GUARDED)):
            await self.app(scope, receive, send)
            return
        principal = scope.get("state", {}).get("principal")
        tenant = principal.tenant if isinstance(principal, Principal) else OPEN.tenant
        try:
            if scope["method"] == "POST":
                self.quotas.take(tenant)
            self.quotas.enter(tenant)
        except ApiError as exc:
            self.stats.refused[("quota", exc.status, exc.code)] += 1
            retry = exc.retry_after if isinstance(exc, RateLimited) else 1.0
            await send_error(send, exc, (b"retry-after", str(max(1, math.ceil(retry))).encode()))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.quotas.leave(tenant)

