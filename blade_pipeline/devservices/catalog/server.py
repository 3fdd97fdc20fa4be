"""The catalog service: FastAPI app factory and the uvicorn entry point of `blade mock-catalog`."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from blade_pipeline.devservices.catalog.errors import install_error_handlers
from blade_pipeline.devservices.catalog.faults import FaultInjectionMiddleware, FaultSettings
from blade_pipeline.devservices.catalog.middleware import BearerAuthMiddleware, BodyLimitMiddleware
from blade_pipeline.devservices.catalog.routes import build_health_router, build_router
from blade_pipeline.devservices.catalog.store import CatalogStore

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def create_app(db_path: str | Path, token: str,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               faults: FaultSettings | None = None) -> FastAPI:
    """The catalog API over a SQLite store at ``db_path`` (created if missing).

    ``faults`` injects errors and latency into ``/api/v1/items*`` (tests only; off if None)."""
    if not token:
        raise ValueError("the catalog service needs a non-empty token")
    store = CatalogStore(db_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="BLADE catalog service (dev stand-in)",
        version="1.0.0",
        description="Durable, idempotent catalog of BLADE items. Bearer-token auth on /api/.",
        lifespan=lifespan,
    )
    # Added last = outermost: faults first (as an overloaded gateway would answer), then auth,
    # then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    app.add_middleware(BearerAuthMiddleware, token=token, prefix="/api/")
    if faults is not None and faults.active:
        app.add_middleware(FaultInjectionMiddleware, settings=faults)
    install_error_handlers(app)
    app.include_router(build_health_router(store))
    refuse = re.compile(faults.reject_ids) if faults is not None and faults.reject_ids else None
    app.include_router(build_router(store, refuse))
    app.state.store = store
    return app


def _log_to_stderr() -> None:
    """INFO records of the catalog package (e.g. injected faults) next to uvicorn's."""
    logger = logging.getLogger("blade_pipeline.devservices.catalog")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(host: str, port: int, db_path: str | Path, token: str,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          faults: FaultSettings | None = None) -> None:
    """Run the service with uvicorn until interrupted (blocks)."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    _log_to_stderr()
    app = create_app(db_path, token, max_body_bytes, faults)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
