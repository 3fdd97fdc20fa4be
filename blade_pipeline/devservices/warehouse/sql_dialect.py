"""Translate Databricks SQL text into SQL DuckDB runs.

Two passes:

1. A lexer pass (it knows string literals, quoted identifiers and comments, so markers inside
   them are left alone): Databricks named markers ``:name`` and ``:`name``` become DuckDB's
   ``$name``; backtick-quoted identifiers become double-quoted ones.
2. A parser pass for queries: DuckDB's own parser (``json_serialize_sql``) finds every table
   reference and column reference with its byte position; references whose first part names a
   Databricks catalog are re-pointed at the attached DuckDB database that stands for it
   (DuckDB reserves the name ``main``). Statements the serializer does not cover (DML, DDL)
   fall back to re-pointing dotted identifier chains of three or more parts found by the lexer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import duckdb

_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | set("0123456789")


@dataclass(frozen=True)
class Token:
    """A lexical token: kind is one of ident, quoted, string, comment, param, space, other."""

    kind: str
    text: str
    start: int  # character offset in the source

    @property
    def name(self) -> str:
        """Identifier value, unquoted (quoted/backticked identifiers keep their case)."""
        if self.kind == "quoted":
            quote = self.text[0]
            return self.text[1:-1].replace(quote * 2, quote)
        return self.text.lower()


def tokenize(sql: str) -> Iterator[Token]:
    """Split SQL text into tokens; never fails (unterminated quotes run to the end)."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        start = i
        if c in "'\"`":
            i += 1
            while i < n:
                if sql[i] == "\\" and c == "'":
                    i += 2
                    continue
                if sql[i] == c:
                    if i + 1 < n and sql[i + 1] == c:
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
            yield Token("string" if c == "'" else "quoted", sql[start:i], start)
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            yield Token("comment", sql[start:i], start)
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            yield Token("comment", sql[start:i], start)
        elif c.isspace():
            while i < n and sql[i].isspace():
                i += 1
            yield Token("space", sql[start:i], start)
        elif c in _IDENT_START:
            while i < n and sql[i] in _IDENT_CHARS:
                i += 1
            yield Token("ident", sql[start:i], start)
        elif c == ":" and i + 1 < n and sql[i + 1] == ":":
            i += 2
            yield Token("other", "::", start)
        elif c == ":" and i + 1 < n and (sql[i + 1] in _IDENT_START or sql[i + 1] == "`"):
            i += 1
            if sql[i] == "`":
                end = sql.find("`", i + 1)
                i = n if end < 0 else end + 1
            else:
                while i < n and sql[i] in _IDENT_CHARS:
                    i += 1
            yield Token("param", sql[start:i], start)
        else:
            i += 1
            yield Token("other", c, start)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lex_translate(sql: str) -> str:
    """Pass 1: Databricks markers and backtick identifiers -> DuckDB spelling."""
    out: list[str] = []
    for tok in tokenize(sql):
        if tok.kind == "param":
            out.append("$" + tok.text[1:].strip("`"))
        elif tok.kind == "quoted" and tok.text[0] == "`":
            out.append(_quote(tok.name))
        else:
            out.append(tok.text)
    return "".join(out)


def is_single_statement(sql: str) -> bool:
    """True when the text holds one statement (a trailing ';' is allowed)."""
    seen_end = False
    for tok in tokenize(sql):
        if tok.kind in ("space", "comment"):
            continue
        if seen_end:
            return False
        if tok.kind == "other" and tok.text == ";":
            seen_end = True
    return True


def _walk(node: object) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _reference_offsets(con: duckdb.DuckDBPyConnection, sql: str,
                       catalogs: Mapping[str, str]) -> list[int] | None:
    """Byte offsets of references whose first part is a Databricks catalog; None if unparsed."""
    cur = con.cursor()
    try:
        tree = json.loads(cur.execute("SELECT json_serialize_sql($1)", [sql]).fetchone()[0])
    finally:
        cur.close()
    if tree.get("error"):
        return None
    offsets = []
    for node in _walk(tree["statements"]):
        if node.get("type") == "BASE_TABLE":
            first = node.get("catalog_name", "")
        elif node.get("class") == "COLUMN_REF" and len(node.get("column_names", [])) >= 4:
            first = node["column_names"][0]
        else:
            continue
        if first.lower() in catalogs and node.get("query_location", -1) < 2**63:
            offsets.append(node["query_location"])
    return offsets


def _repoint_chains(tokens: list[Token], catalogs: Mapping[str, str]) -> set[int]:
    """Token indexes that start a dotted chain of >= 3 identifiers led by a known catalog."""
    heads = set()
    for i, tok in enumerate(tokens):
        if tok.kind not in ("ident", "quoted") or tok.name.lower() not in catalogs:
            continue
        if i > 0 and tokens[i - 1].text == ".":
            continue
        parts, j = 1, i + 1
        while j + 1 < len(tokens) and tokens[j].text == "." and \
                tokens[j + 1].kind in ("ident", "quoted"):
            parts, j = parts + 1, j + 2
        if parts >= 3:
            heads.add(i)
    return heads


def translate(con: duckdb.DuckDBPyConnection, sql: str, catalogs: Mapping[str, str]) -> str:
    """Databricks SQL -> DuckDB SQL, with catalog names mapped (keys lower-case)."""
    sql = lex_translate(sql)
    tokens = list(tokenize(sql))
    offsets = _reference_offsets(con, sql, catalogs)
    if offsets is None:
        heads = _repoint_chains(tokens, catalogs)
    else:
        raw = sql.encode()
        chars = {len(raw[:off].decode(errors="ignore")) for off in offsets}
        heads = {i for i, tok in enumerate(tokens) if tok.start in chars}
    out = []
    for i, tok in enumerate(tokens):
        if i in heads and tok.kind in ("ident", "quoted") and tok.name.lower() in catalogs:
            out.append(_quote(catalogs[tok.name.lower()]))
        else:
            out.append(tok.text)
    return "".join(out)
