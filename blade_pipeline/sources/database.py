"""What the relational kinds (``postgres``, ``mysql``) share: a source database reached by a
URL that is a secret when it carries a password, an endpoint that names host, port and
database only, and one classification of driver errors (refused login: not retried; server
unreachable or connection lost: the step retries; anything else: the query failed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from blade_pipeline.sources import sql as source_sql
from blade_pipeline.sources.reader import (
    SourceAuthError,
    SourceError,
    SourceQueryError,
    SourceReader,
    SourceResultLostError,
)

if TYPE_CHECKING:
    from blade_pipeline.config.sources import BladeSource


class SourceDatabase(SourceReader):
    """A relational database holding source tables; subclasses name their product."""

    url: str  # scheme://user[:password]@host:port/database (a secret with a password)
    connect_timeout_s: int = 10

    product: ClassVar[str]  # "PostgreSQL", as errors name it
    scheme: ClassVar[str]
    default_port: ClassVar[int]
    url_variable: ClassVar[str]  # the environment variable of the URL
    auth_markers: ClassVar[tuple[str, ...]]  # driver texts of a refused login
    down_markers: ClassVar[tuple[str, ...]]  # … of a server unreachable or a connection lost

    @property
    def endpoint(self) -> str:
        parts = urlsplit(self.url)
        return (f"{self.scheme}://{parts.hostname or 'localhost'}:"
                f"{parts.port or self.default_port}{parts.path}")

    def _scrub(self, text: str) -> str:
        password = urlsplit(self.url).password
        text = text.replace(self.url, self.endpoint)
        return text.replace(password, "***") if password else text

    def _text(self, exc: BaseException) -> str:
        """The driver's message as one line."""
        return " ".join(str(exc).split()) or type(exc).__name__

    def _refused(self, lowered: str) -> bool:
        return any(marker in lowered for marker in self.auth_markers)

    def _wrap(self, exc: BaseException, doing: str) -> SourceError:
        text = self._scrub(self._text(exc))
        lowered = text.lower()
        if self._refused(lowered):
            return SourceAuthError(
                f"{self.product} {self.endpoint} refused the connection while {doing} (check "
                f"{self.url_variable}'s user, password and database): {text}")
        if any(marker in lowered for marker in self.down_markers):  # the step retries
            return SourceResultLostError(
                f"{self.product} {self.endpoint} cannot be reached or dropped the connection "
                f"while {doing} (the step retries): {text}")
        return SourceQueryError(f"{self.product} {self.endpoint} failed {doing}: {text}")

    def key_is_unique(self, source: BladeSource) -> bool:
        """Whether a PRIMARY KEY or UNIQUE constraint holds the key column alone (both
        databases enforce them). A catalog the login may not read answers "not known": the
        duplicates are then looked for, as without a constraint."""
        try:
            return self.query_arrow(source_sql.key_constraints(source)).num_rows > 0
        except SourceError:
            return False
