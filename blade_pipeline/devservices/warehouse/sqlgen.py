"""SQL expression builders for set-based pseudo-random data in DuckDB.

Every random draw hashes the row index within a stream named by (seed, tag), so a query over
``range(n)`` yields the same rows on every run (for a given DuckDB version; its ``hash`` is
not seeded per process).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def lit(value: object) -> str:
    """A SQL literal for a Python str/int/float/bool/None/date/datetime, or a list of them."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def stream_offset(seed: int, tag: str) -> int:
    """A 62-bit constant naming the random stream (seed, tag)."""
    digest = hashlib.blake2b(f"{seed}:{tag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def hash_expr(index: str, seed: int, tag: str) -> str:
    """A UBIGINT pseudo-random value for (index, seed, tag).

    ``hash(index + offset)`` with a per-stream offset: DuckDB's one-argument hash mixes well,
    whereas its multi-argument form (``hash(i, seed, 'tag')``) combines the parts so weakly that
    draws for different tags correlate (r ~ 0.5).
    """
    return f"hash(({index}) + {stream_offset(seed, tag)}::BIGINT)"


def uniform(index: str, seed: int, tag: str) -> str:
    """A DOUBLE uniform in [0, 1) (53 random bits, so never 1.0)."""
    return f"(({hash_expr(index, seed, tag)} >> 11)::DOUBLE / 9007199254740992.0)"


def normal(u1: str, u2: str) -> str:
    """A standard normal draw from two uniforms (Box-Muller)."""
    return f"(sqrt(-2.0 * ln(1.0 - {u1})) * cos(2.0 * pi() * {u2}))"


def pick(u: str, values: Sequence[object]) -> str:
    """One of ``values``, uniformly, by uniform expression ``u``."""
    return f"({lit(list(values))})[1 + floor({u} * {len(values)})::BIGINT]"


def weighted(u: str, weights: Mapping[object, float]) -> str:
    """One of the keys of ``weights`` with probability proportional to its weight.

    ``u`` should be a column name: it is repeated in every branch.
    """
    total = float(sum(weights.values()))
    items = list(weights.items())
    branches, cumulative = [], 0.0
    for value, weight in items[:-1]:
        cumulative += weight
        branches.append(f"WHEN {u} < {cumulative / total!r} THEN {lit(value)}")
    return f"(CASE {' '.join(branches)} ELSE {lit(items[-1][0])} END)"


def zipf_weights(values: Sequence[object], exponent: float = 0.9) -> dict[object, float]:
    """Rank-based Zipf weights: the first value is the most frequent."""
    return {v: 1.0 / (rank + 1) ** exponent for rank, v in enumerate(values)}


def switch(subject: str, cases: Mapping[object, str], default: str = "NULL") -> str:
    """``CASE subject WHEN k THEN expr ... END``."""
    whens = " ".join(f"WHEN {lit(k)} THEN {expr}" for k, expr in cases.items())
    return f"(CASE {subject} {whens} ELSE {default} END)"


def template(text: str, placeholders: Mapping[str, str]) -> str:
    """A string template with ``{name}`` placeholders as a SQL concatenation of expressions."""
    parts: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > pos:
            parts.append(lit(text[pos:match.start()]))
        parts.append(f"CAST({placeholders[match.group(1)]} AS VARCHAR)")
        pos = match.end()
    if pos < len(text):
        parts.append(lit(text[pos:]))
    return "(" + " || ".join(parts) + ")" if parts else "''"


def pick_template(u: str, texts: Sequence[str], placeholders: Mapping[str, str]) -> str:
    """One of several templates, uniformly, rendered with ``placeholders``."""
    if len(texts) == 1:
        return template(texts[0], placeholders)
    cases = {k: template(t, placeholders) for k, t in enumerate(texts)}
    return switch(f"floor({u} * {len(texts)})::INTEGER", cases)
