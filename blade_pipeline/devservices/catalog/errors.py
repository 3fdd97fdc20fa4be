"""JSON error responses: ``{"error": code, "reason": text, "field": name or null}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
          422: "invalid_request", 429: "too_many_requests", 500: "internal_error",
          502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout"}
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


class ApiError(Exception):
    """Raised by endpoints; becomes a JSON error response."""

    def __init__(self, status: int, reason: str, field: str | None = None,
                 error: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.field = status, reason, field
        self.error = error or _CODES.get(status, "error")


def error_response(status: int, reason: str, field: str | None = None,
                   error: str | None = None, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    body = {"error": error or _CODES.get(status, "error"), "reason": reason, "field": field}
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (p in _LOCATIONS and p == loc[0])]
    return ".".join(parts) or str(loc[0] if loc else "body")


def _expects_form(request: Request) -> bool:
    route = request.scope.get("route")
    body = getattr(route, "body_field", None)
    return type(getattr(body, "field_info", None)).__name__ in {"Form", "File"}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    if _expects_form(request) and not content_type.startswith("multipart/form-data"):
        return error_response(400, "request body must be multipart/form-data, "
                                   f"got {content_type[:60] or 'no Content-Type'}", "body")
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(400, f"invalid JSON body: {detail}", "body")
    reasons = "; ".join(f"{_field_name(tuple(e['loc']))}: {e['msg']}" for e in errors[:10])
    return error_response(422, reasons, _field_name(tuple(first["loc"])))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.reason, exc.field, exc.error)


def _http_reason(request: Request, exc: HTTPException) -> str:
    """Starlette's and FastAPI's terse details, made to say what was wrong."""
    target = f"{request.method} {request.url.path[:200]!r}"
    if exc.status_code == 404 and exc.detail == "Not Found":
        hint = " (an item id cannot contain '/')" if request.url.path.startswith(
            "/api/v1/items/") else ""
        return f"no endpoint {target}{hint}"
    if exc.status_code == 405 and exc.detail == "Method Not Allowed":
        return f"method not allowed: {target}"
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            return "invalid JSON body: not UTF-8 text"
        if isinstance(cause, RecursionError):
            return "invalid JSON body: nested too deeply"
        if cause is not None:
            return f"invalid body: {type(cause).__name__}"
    return str(exc.detail)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    field = "body" if exc.status_code in (400, 413) else None
    return error_response(exc.status_code, _http_reason(request, exc), field,
                          headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", error="internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
