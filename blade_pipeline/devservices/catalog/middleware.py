"""ASGI middleware of the catalog service: bearer-token auth and the request body limit.

Both act before the endpoint reads the body, so refused uploads cost nothing.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blade_pipeline.devservices.catalog.errors import error_response


class BearerAuthMiddleware:
    """Requires ``Authorization: Bearer <token>`` under ``prefix``: 401 if absent, 403 if wrong.

    Runs before the body is read, so unauthenticated uploads cost nothing.
    """

    def __init__(self, app: ASGIApp, token: str, prefix: str = "/api/") -> None:
        self.app = app
        self.token = token.encode()
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            response = error_response(
                401, "missing bearer token: send 'Authorization: Bearer <token>'",
                "Authorization", headers={"WWW-Authenticate": "Bearer"})
        elif not hmac.compare_digest(credentials.encode(), self.token):
            response = error_response(403, "invalid bearer token", "Authorization")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class BodyLimitMiddleware:
    """413 when Content-Length, or the bytes actually streamed, exceed ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            exc = BodyTooLarge(self.limit)
            await error_response(413, str(exc.detail), "body")(scope, receive, send)
            return
        total = 0

        async def limited_receive() -> Message:
            nonlocal total
            message = await receive()
            total += len(message.get("body", b""))
            if total > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)
