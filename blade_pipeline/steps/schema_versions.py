"""Schema versions of a source: what its table looked like each time it changed.

Every staging run observes the columns the warehouse sent (name, Arrow type, Databricks type,
nullability). When they differ from the source's newest version, a new version is written with
its changes classified against the previous one:

* ``ADD_COLUMN`` / ``DROP_COLUMN``;
* ``CHANGE_TYPE``, ``widening`` when every old value fits the new type (Delta Lake's type
  widening: byte → short → int → long → double, float → double, a decimal that keeps its
  integer digits and scale, date → timestamp_ntz), narrowing otherwise;
* ``NULLABILITY``: ``widening`` when a column starts admitting NULLs.

What a change *does* is ``schema_policy.py``'s business; here are the versions and which one
is expected.

Where they live: the lake, ``<lake>/<type>/_schema/v0001.json`` … — next to the data they
describe, shared by every machine that runs steps (local disk or S3), each written once
(create-only) and atomically, only after the run's days are staged (a run that fails mid-way
records nothing, never half of a version), and readable without Dagster (``blade schema
history``). Not in the Dagster instance's PostgreSQL: that database is Dagster's (its tables,
its migrations), and a second store would have to be kept consistent with the lake.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from blade_pipeline.storage.lake import ParquetLake

_INTEGERS = ["tinyint", "smallint", "int", "bigint"]


def databricks_type(arrow: pa.DataType) -> str:
    """The Databricks SQL name of an Arrow type, as the connector maps them."""
    simple = {pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int",
              pa.int64(): "bigint", pa.float32(): "float", pa.float64(): "double",
              pa.bool_(): "boolean", pa.string(): "string", pa.large_string(): "string",
              pa.date32(): "date", pa.binary(): "binary", pa.large_binary(): "binary"}
    if arrow in simple:
        return simple[arrow]
    if pa.types.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        return "timestamp" if arrow.tz else "timestamp_ntz"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return f"array<{databricks_type(arrow.value_type)}>"
    if pa.types.is_map(arrow):
        return f"map<{databricks_type(arrow.key_type)},{databricks_type(arrow.item_type)}>"
    if pa.types.is_struct(arrow):
        return "struct<" + ",".join(f"{f.name}:{databricks_type(f.type)}" for f in arrow) + ">"
    return str(arrow)


@dataclass(frozen=True)
class Column:
    name: str
    arrow_type: str
    databricks_type: str
    nullable: bool


def observe(schema: pa.Schema) -> tuple[Column, ...]:
    """The columns of a result, in order."""
    return tuple(Column(f.name, str(f.type), databricks_type(f.type), f.nullable)
                 for f in schema)


def _decimal(name: str) -> tuple[int, int] | None:
    if not name.startswith("decimal("):
        return None
    precision, scale = name[len("decimal("):-1].split(",")
    return int(precision), int(scale)


def is_widening(before: str, after: str) -> bool:
    """Whether every value of Databricks type ``before`` fits ``after`` unchanged."""
    if before in _INTEGERS and after in _INTEGERS:
        return _INTEGERS.index(after) > _INTEGERS.index(before)
    if (before in _INTEGERS and after == "double") or (before, after) == ("float", "double"):
        return True
    if (before, after) == ("date", "timestamp_ntz"):
        return True
    old, new = _decimal(before), _decimal(after)
    if new and before in _INTEGERS:  # an integer into a decimal with room for its digits
        digits = {"tinyint": 3, "smallint": 5, "int": 10, "bigint": 20}[before]
        return new[0] - new[1] >= digits
    if old and new:
        return new[1] >= old[1] and new[0] - new[1] >= old[0] - old[1] and new != old
    return False


@dataclass(frozen=True)
class Change:
    kind: str  # ADD_COLUMN, DROP_COLUMN, CHANGE_TYPE, NULLABILITY
    column: str
    before: str | None = None
    after: str | None = None
    widening: bool | None = None  # CHANGE_TYPE / NULLABILITY only

    def describe(self) -> str:
        if self.kind == "ADD_COLUMN":
            return f"ADD_COLUMN {self.column} {self.after}"
        if self.kind == "DROP_COLUMN":
            return f"DROP_COLUMN {self.column} (was {self.before})"
        how = "widening" if self.widening else "narrowing"
        return f"{self.kind} {self.column} {self.before} -> {self.after} ({how})"


def diff(before: Sequence[Column], after: Sequence[Column]) -> list[Change]:
    """The changes from ``before`` to ``after``: added, dropped, retyped, nullability."""
    old, new = {c.name: c for c in before}, {c.name: c for c in after}
    changes = [Change("ADD_COLUMN", c.name, after=c.databricks_type)
               for c in after if c.name not in old]
    changes += [Change("DROP_COLUMN", c.name, before=c.databricks_type)
                for c in before if c.name not in new]
    for column in after:
        was = old.get(column.name)
        if was is None:
            continue
        if was.databricks_type != column.databricks_type:
            changes.append(Change("CHANGE_TYPE", column.name, was.databricks_type,
                                  column.databricks_type,
                                  is_widening(was.databricks_type, column.databricks_type)))
        if was.nullable != column.nullable:
            changes.append(Change("NULLABILITY", column.name,
                                  "NULL" if was.nullable else "NOT NULL",
                                  "NULL" if column.nullable else "NOT NULL", column.nullable))
    return changes


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    columns: tuple[Column, ...]
    observed_at: str
    run_id: str
    changes: tuple[Change, ...] = field(default=())  # against the previous version

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SchemaVersion:
        return cls(version=doc["version"], observed_at=doc["observed_at"], run_id=doc["run_id"],
                   columns=tuple(Column(**c) for c in doc["columns"]),
                   changes=tuple(Change(**c) for c in doc.get("changes", ())))


@dataclass(frozen=True)
class Expected:
    """Which version runs check against, and the acts that chose it (newest last)."""

    version: int
    pinned: bool = False  # set by ``blade schema pin``: runs do not adopt newer versions
    acts: tuple[dict[str, Any], ...] = ()


_VERSION_FILE = re.compile(r"/v(\d{4,})\.json$")
MAX_ACTS = 200


class SchemaHistory:
    """The versions of one data type in the lake, and which one is expected.

    ``_schema/vNNNN.json`` per version (written once, never changed), ``_schema/expected.json``
    the expected one: the first version until a run adopts a newer one (every change allowed
    by the policy), ``blade schema accept`` makes the newest one expected, ``blade schema pin``
    an older one (and stops adoption until the next accept)."""

    def __init__(self, lake: ParquetLake, data_type: str):
        self.lake, self.data_type = lake, data_type
        self.directory = lake.path(data_type, "_schema")

    def _file(self, version: int) -> str:
        return f"{self.directory}/v{version:04d}.json"

    def _files(self) -> list[str]:
        return sorted((p for p in self.lake.list_files(self.directory) if _VERSION_FILE.search(p)),
                      key=lambda p: int(_VERSION_FILE.search(p).group(1)))

    def versions(self) -> list[SchemaVersion]:
        """Every version, oldest first."""
        return [SchemaVersion.from_json(self.lake.read_json(path)) for path in self._files()]

    def version(self, number: int) -> SchemaVersion:
        doc = self.lake.read_json(self._file(number))
        if doc is None:
            known = ", ".join(f"v{v.version}" for v in self.versions()) or "none yet"
            raise KeyError(f"{self.data_type} has no schema version {number} (known: {known})")
        return SchemaVersion.from_json(doc)

    def newest(self) -> SchemaVersion | None:
        """The newest version (one file read, whatever the history's length)."""
        found = self._files()
        return SchemaVersion.from_json(self.lake.read_json(found[-1])) if found else None

    def record(self, columns: tuple[Column, ...], run_id: str
               ) -> tuple[SchemaVersion, bool]:
        """The version matching ``columns``: the newest one if unchanged, else a new one
        written now (create-only: a number taken meanwhile by another run is re-read).
        Returns (version, whether this call wrote it)."""
        while True:
            newest = self.newest()
            if newest is not None and newest.columns == columns:
                return newest, False
            version = SchemaVersion(
                version=(newest.version + 1) if newest else 1, columns=columns, run_id=run_id,
                observed_at=_now(), changes=tuple(diff(newest.columns, columns)) if newest
                else ())
            try:
                self.lake.write_json(self._file(version.version), version.as_json(),
                                     create_only=True)
            except FileExistsError:
                continue
            return version, True

    # ---- the expected version -------------------------------------------------------------
    @property
    def _expected_file(self) -> str:
        return f"{self.directory}/expected.json"

    def expected(self) -> Expected | None:
        """The expected version as chosen (None: no choice yet, the first version is)."""
        doc = self.lake.read_json(self._expected_file)
        if doc is None:
            return None
        return Expected(doc["version"], doc.get("pinned", False), tuple(doc.get("acts", ())))

    def expected_number(self) -> int | None:
        """The number of the version runs check against (None: no version yet)."""
        chosen = self.expected()
        if chosen is not None:
            return chosen.version
        found = self._files()
        return int(_VERSION_FILE.search(found[0]).group(1)) if found else None

    def expected_version(self) -> tuple[SchemaVersion | None, bool]:
        """The version runs check against (the first one until one is chosen; None before any
        run) and whether it is pinned."""
        chosen = self.expected()
        if chosen is not None:
            return self.version(chosen.version), chosen.pinned
        found = self._files()
        return (SchemaVersion.from_json(self.lake.read_json(found[0])) if found else None,
                False)

    def set_expected(self, version: int, act: str, by: str, reason: str = "",
                     pinned: bool = False) -> Expected:
        """Make ``version`` the expected one and log the act (accept, pin, adopt) in the same
        document (written atomically)."""
        self.version(version)  # it must exist
        before, previous = self.expected(), self.expected_number()
        entry = {"act": act, "version": version, "previous": previous, "at": _now(),
                 "by": by, "reason": reason}
        chosen = Expected(version, pinned, ((before.acts if before else ()) + (entry,))[
            -MAX_ACTS:])
        self.lake.write_json(self._expected_file, {
            "version": chosen.version, "pinned": chosen.pinned, "acts": list(chosen.acts)})
        return chosen


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
