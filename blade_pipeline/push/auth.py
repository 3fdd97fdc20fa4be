"""Who may push: a bearer JWT on every call, verified with PyJWT.

HS256 with ``BLADE_INGEST_JWT_SECRET`` (the demo and the tests) or RS256/ES256 keys from
``BLADE_INGEST_JWKS_URL`` (production); audience ``BLADE_INGEST_JWT_AUDIENCE``. Required claims:
``tenant`` (a subject-safe name: it becomes part of the log subject and travels with every
record), ``endpoints`` (the push sources the token may write, or ``"*"``) and ``exp``.
A missing, malformed, forged or expired token is a 401; a source the token does not name, a
403. The token itself never appears in an error or a log line.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import jwt

TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BEARER = re.compile(r"^Bearer\s+(\S+)\s*$", re.IGNORECASE)


class AuthError(Exception):
    """A refused call: ``status`` 401 (who are you?) or 403 (not this source)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """The verified caller: its tenant and the push sources it may write."""

    tenant: str
    endpoints: frozenset[str]  # {"*"}: every push source

    def require(self, source: str) -> None:
        """403 unless the token names ``source`` (or ``"*"``)."""
        if "*" not in self.endpoints and source not in self.endpoints:
            raise AuthError(403, f"tenant {self.tenant!r} may not write to {source!r} "
                                 "(not in the token's endpoints)")


class TokenVerifier:
    """Verifies bearer tokens against a shared secret (HS256) or a JWKS (asymmetric keys)."""

    def __init__(self, audience: str, secret: str | None = None,
                 jwks_url: str | None = None) -> None:
        if not (secret or jwks_url):
            raise ValueError("a token verifier needs BLADE_INGEST_JWT_SECRET or "
                             "BLADE_INGEST_JWKS_URL")
        self._audience = audience
        self._secret = secret
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None

    def verify(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; :class:`AuthError` (401)."""
        match = _BEARER.match(authorization or "")
        if not match:
            raise AuthError(401, "missing bearer token (Authorization: Bearer <JWT>)")
        token = match.group(1)
        try:
            if self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256"]
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(token, key, algorithms=algorithms, audience=self._audience,
                                options={"require": ["exp", "tenant", "endpoints"]})
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(401, f"token audience is not {self._audience!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(401, f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWKClientError:
            raise AuthError(401, "token signed by a key the JWKS does not hold") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token ({type(exc).__name__})") from None
        return _principal(claims)


def _principal(claims: dict) -> Principal:
    tenant, endpoints = claims["tenant"], claims["endpoints"]
    if not isinstance(tenant, str) or not TENANT.match(tenant):
        raise AuthError(401, "token's tenant must be 1-64 letters, digits, '_' or '-'")
    if endpoints == "*":
        endpoints = ["*"]
    if not (isinstance(endpoints, list) and all(isinstance(e, str) for e in endpoints)):
        raise AuthError(401, "token's endpoints must be a list of source names or \"*\"")
    return Principal(tenant, frozenset(endpoints))


def mint_token(secret: str, tenant: str, endpoints: list[str] | str, audience: str,
               ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
    """An HS256 token for development (``blade ingest-token``) and tests."""
    if not TENANT.match(tenant):
        raise ValueError(f"tenant {tenant!r}: 1-64 letters, digits, '_' or '-'")
    now = dt.datetime.now(dt.UTC)
    return jwt.encode({"tenant": tenant, "endpoints": endpoints, "aud": audience,
                       "iat": now, "exp": now + ttl}, secret, algorithm="HS256")
