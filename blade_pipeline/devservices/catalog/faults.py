"""Fault injection for the catalog service: injected error statuses and added latency.

For fault-injection tests (``blade mock-catalog --fail-rate/--fail-first/...``); all off by
default. Only requests under ``/api/v1/items`` are affected, never ``/healthz``. A failed request
is answered before auth, the body limit or any endpoint runs, so nothing is applied.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from blade_pipeline.devservices.catalog.errors import error_response

log = logging.getLogger(__name__)

FAULT_PATH_PREFIX = "/api/v1/items"


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """What to inject. ``fail_first`` requests fail, then each fails with ``fail_rate``."""

    fail_rate: float = 0.0
    fail_status: int = 503
    retry_after_s: int | None = None
    fail_first: int = 0
    seed: int | None = None
    latency_ms: float = 0.0
    #: items whose id matches this regular expression are refused (a batch line each, with a
    #: reason), as a catalog's policy would refuse them; the rest of the batch is stored
    reject_ids: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within 0..1, got {self.fail_rate}")
        if not 400 <= self.fail_status <= 599:
            raise ValueError(f"fail_status must be a 4xx or 5xx status, got {self.fail_status}")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        if self.fail_first < 0 or self.latency_ms < 0:
            raise ValueError("fail_first and latency_ms must be >= 0")
        if self.reject_ids is not None:
            try:
                re.compile(self.reject_ids)
            except re.error as exc:
                raise ValueError(f"reject_ids is no regular expression: {exc}") from None

    @property
    def active(self) -> bool:
        return self.fail_rate > 0 or self.fail_first > 0 or self.latency_ms > 0


class FaultInjectionMiddleware:
    """ASGI middleware: delays, then fails, requests under ``/api/v1/items`` as configured.

    Decisions are taken in arrival order on the event loop, so a seeded run of sequential
    requests sees the same sequence of failures every time."""

    def __init__(self, app: ASGIApp, settings: FaultSettings) -> None:
        self.app = app
        self.settings = settings
        self.seen = 0
        self.injected = 0
        self._random = random.Random(settings.seed)

    def _should_fail(self) -> bool:
        self.seen += 1
        if self.seen <= self.settings.fail_first:
            return True
        return self.settings.fail_rate > 0 and self._random.random() < self.settings.fail_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(FAULT_PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        settings = self.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        if not self._should_fail():
            await self.app(scope, receive, send)
            return
        self.injected += 1
        log.info("injected fault #%d: HTTP %d for %s %s (request %d)", self.injected,
                 settings.fail_status, scope["method"], scope["path"], self.seen)
        headers = ({"Retry-After": str(settings.retry_after_s)}
                   if settings.retry_after_s is not None else None)
        response = error_response(
            settings.fail_status,
            f"injected fault (fault injection is on): HTTP {settings.fail_status}, "
            "request not processed", headers=headers)
        await response(scope, receive, send)
