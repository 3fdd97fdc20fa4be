"""Declarative BLADE sources (sources.yaml), loaded and validated with pydantic.

A bad file fails at load with a message naming the entry and the field.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from blade_pipeline.config.settings import BladeSettings

SOURCES_FILE = Path(__file__).with_name("sources.yaml")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourcesFileError(ValueError):
    """sources.yaml is missing, not YAML, or an entry is invalid."""


def _plain_identifier(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarehouseTable(_Strict):
    """Where a source's rows live in the warehouse."""

    catalog: str
    schema_: str = Field(alias="schema")
    table: str
    warehouse_id: str

    @field_validator("catalog", "schema_", "table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _plain_identifier(value)

    @property
    def parts(self) -> tuple[str, ...]:
        """The table's name parts, outermost first (``sources.sql.table`` quotes them)."""
        return (self.catalog, self.schema_, self.table)


class DatabaseTable(_Strict):
    """Where a relational source's rows live (``kind: postgres`` / ``mysql``): schema (for
    MySQL: the database) and table, on the server the kind's resource connects to."""

    schema_: str = Field(alias="schema")
    table: str

    @field_validator("schema_", "table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _plain_identifier(value)

    @property
    def parts(self) -> tuple[str, ...]:
        """The table's name parts, outermost first (``sources.sql.table`` quotes them)."""
        return (self.schema_, self.table)


#: a CSV column's declared type -> the DuckDB type its text is parsed as (the seed's logical
#: type map, plus ``date``, ``boolean`` and ``decimal(p,s)``). Timestamps are ISO 8601; one
#: with an offset (``+02:00``, ``Z``) is converted to UTC, one without is UTC already: they
#: land as naive UTC, as Databricks ``TIMESTAMP_NTZ`` columns arrive.
CSV_TYPES = {"int": "BIGINT", "integer": "BIGINT", "bigint": "BIGINT", "float": "DOUBLE",
             "double": "DOUBLE", "string": "VARCHAR", "text": "VARCHAR",
             "datetime": "TIMESTAMPTZ", "timestamp": "TIMESTAMPTZ", "date": "DATE",
             "boolean": "BOOLEAN", "bool": "BOOLEAN"}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def csv_duckdb_type(declared: str) -> str:
    """The DuckDB type of a declared CSV column type (ValueError naming the known ones)."""
    text = declared.strip().lower()
    if text in CSV_TYPES:
        return CSV_TYPES[text]
    match = _DECIMAL.match(text)
    if match and 1 <= int(match.group(1)) <= 38 and int(match.group(2)) <= int(match.group(1)):
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    raise ValueError(f"{declared!r} is not a CSV column type (known: "
                     f"{', '.join(CSV_TYPES)}, decimal(p,s) with 1 <= p <= 38, s <= p)")


def declared_columns(value: dict[str, str], plain_names: bool = False) -> dict[str, str]:
    """Columns declared with the CSV type names (see ``CSV_TYPES``), each type checked."""
    for name, declared in value.items():
        if plain_names and not _IDENT.match(name):
            raise ValueError(f"{name!r} is not a plain column name")
        try:
            csv_duckdb_type(declared)
        except ValueError as exc:
            raise ValueError(f"column {name!r}: {exc}") from None
    return value


class _DeclaredColumns(_Strict):
    """A source whose columns are declared by type name in sources.yaml (CSV drops, pushes)."""

    columns: dict[str, str]

    def duckdb_types(self) -> dict[str, str]:
        return {name: csv_duckdb_type(declared) for name, declared in self.columns.items()}


class CsvDrop(_DeclaredColumns):
    """Where a CSV source's files land (``kind: csv``) and how they are read.

    Files land in ``<BLADE_LANDING_URI>/<folder>/`` (a local path or ``s3://bucket/prefix``);
    each complete file is parsed with the declared types, its rows kept in the lake under
    ``landed/<folder>/`` (the table the rest of the pipeline reads), the file moved to
    ``<folder>/_processed/``."""

    folder: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    #: column -> declared type (see ``CSV_TYPES``); a column of a file that is not declared
    #: is read as text (a new column for the schema policy)
    columns: dict[str, str]
    #: ``stable``: a file is complete when its size and modification time did not change
    #: between two sensor ticks; ``marker``: when ``<file>.done`` exists beside it
    complete_when: Literal["stable", "marker"] = "stable"
    pattern: str = "*.csv"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    escape: str = Field(default='"', min_length=1, max_length=1)
    encoding: Literal["utf-8", "utf-16", "latin-1"] = "utf-8"

    @field_validator("columns")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("declare at least one column")
        return declared_columns(value)

    @property
    def schema_(self) -> str:
        return "landed"

    @property
    def table(self) -> str:
        return self.folder

    @property
    def parts(self) -> tuple[str, ...]:
        """``landed.<folder>``: the landed rows, as the ``csv`` resource names them."""
        return ("landed", self.folder)


#: a declared column type -> its Arrow type (pushed records; the same names as ``CSV_TYPES``)
_ARROW_TYPES = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "VARCHAR": pa.string(),
                "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(),
                "BOOLEAN": pa.bool_()}


class PushEndpoint(_DeclaredColumns):
    """What clients push to a ``kind: push`` source (``blade ingest-server``): records of the
    declared columns (the same type names as a CSV drop's), as NDJSON or Arrow IPC batches."""

    #: column -> declared type (see ``CSV_TYPES``); a pushed field not declared is refused
    columns: dict[str, str]
    #: the drained rows' table, ``pushed.<table>`` (the source's name)
    table: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @field_validator("columns")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        return declared_columns(value, plain_names=True)

    @property
    def schema_(self) -> str:
        return "pushed"

    @property
    def parts(self) -> tuple[str, ...]:
        """``pushed.<table>``: the drained rows, as the ``pushed`` resource names them."""
        return ("pushed", self.table)

    def arrow_schema(self) -> pa.Schema:
        """The records' Arrow schema (decimals as ``decimal128(p, s)``)."""
        fields = []
        for name, declared in self.columns.items():
            duck = csv_duckdb_type(declared)
            if duck.startswith("DECIMAL("):
                precision, scale = duck[8:-1].split(",")
                fields.append(pa.field(name, pa.decimal128(int(precision), int(scale))))
            else:
                fields.append(pa.field(name, _ARROW_TYPES[duck]))
        return pa.schema(fields)


#: source kind -> the key of the resource that reads it
RESOURCE_KEYS = {"databricks": "warehouse", "postgres": "postgres", "mysql": "mysql",
                 "csv": "csv", "push": "pushed"}


class Classification(_Strict):
    """Classification marking: a column of the row, falling back to a default."""

    column: str | None = None
    default: str = "UNCLASS"


class SchemaPolicy(_Strict):
    """What a change of the source's schema does (against the expected version; see
    ``schema_policy.py``). The defaults keep a new column (carried into the items) and block
    the upload on any retyped or dropped column until it is accepted."""

    #: evolve: carried into every item's ``data`` (so into its content hash); ignore: left out
    #: of the items (they do not churn); fail: the upload is blocked until accepted.
    on_new_column: Literal["evolve", "ignore", "fail"] = "evolve"
    #: widen: a widening change goes on (values cast back to the model's type where it has
    #: one; a value that does not fit quarantines its row); narrowing always blocks.
    on_type_change: Literal["widen", "fail"] = "fail"
    #: allow: a column the model does not require may go (its values read as NULL).
    on_dropped_column: Literal["fail", "allow"] = "fail"


class BladeSource(_Strict):
    """One BLADE data type: its table, keys and ingestion settings."""

    name: str
    display_name: str
    data_type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    #: the Pandera model (config/pandera_models.py) its rows are validated with (default:
    #: ``data_type``): a second source of maintenance records names ``model: maintenance``
    model: str | None = None
    enabled: bool = True
    #: where the rows come from: a Databricks SQL warehouse table (``warehouse``), or a
    #: PostgreSQL / MySQL-MariaDB table (``database``, read by the ``postgres`` / ``mysql``
    #: resource), or CSV files dropped in a landing folder (``csv``), or records clients push
    #: to ``blade ingest-server`` (``push``)
    kind: Literal["databricks", "postgres", "mysql", "csv", "push"] = "databricks"
    warehouse: WarehouseTable | None = None
    database: DatabaseTable | None = None
    csv: CsvDrop | None = None
    push: PushEndpoint | None = None
    primary_key: str
    watermark_column: str = "last_modified"
    item_id_prefix: str = Field(pattern=r"^[A-Z][A-Z0-9]*$")
    classification: Classification = Classification()
    partition_start: dt.date
    max_invalid_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    #: A day fails ``invalid_fraction`` only when it quarantines more than
    #: max(invalid_rows_allowed, max_invalid_fraction x extracted rows): a few invalid rows
    #: on a small day are noise (quarantined all the same), not a reason to stop the day.
    invalid_rows_allowed: int = Field(default=5, ge=0)
    #: None: a backfill of any range is one run (BackfillPolicy.single_run); N: runs of at
    #: most N days each (BackfillPolicy.multi_run), for very large sources.
    max_partitions_per_run: int | None = Field(default=None, ge=1)
    #: Day D is due (staged and in the catalog) by D+1 at this time, UTC: the ``freshness``
    #: checks fail after it. Quote it in YAML ("03:00"): unquoted, YAML reads 13:30 as 810.
    due_by: dt.time = dt.time(3, 0)
    schema_policy: SchemaPolicy = SchemaPolicy()

    @model_validator(mode="before")
    @classmethod
    def _push_table(cls, data: object) -> object:
        """A push source's drained rows are the table named after the source."""
        if isinstance(data, dict) and isinstance(data.get("push"), dict):
            return {**data, "push": {"table": data.get("name"), **data["push"]}}
        return data

    @field_validator("due_by", mode="before")
    @classmethod
    def _time_of_day(cls, value: object) -> object:
        if isinstance(value, int):
            raise ValueError(f"{value!r} is not a time of day: quote it, e.g. \"03:00\"")
        return value

    @field_validator("primary_key", "watermark_column")
    @classmethod
    def _column(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"{value!r} is not a plain column name")
        return value

    @model_validator(mode="after")
    def _location(self) -> BladeSource:
        wanted = _LOCATION[self.kind]
        if getattr(self, wanted) is None:
            raise ValueError(f"kind {self.kind} needs a '{wanted}' entry")
        for other in sorted(set(_LOCATION.values()) - {wanted}):
            if getattr(self, other) is not None:
                raise ValueError(f"kind {self.kind} reads '{wanted}', not '{other}'")
        if self.csv is not None:
            declared = self.csv.duckdb_types()
            for role, column in (("primary_key", self.primary_key),
                                 ("watermark_column", self.watermark_column)):
                if column not in declared:
                    raise ValueError(f"csv.columns must declare the {role} {column!r}")
            if declared[self.watermark_column] != "TIMESTAMPTZ":
                raise ValueError(f"csv.columns: the watermark {self.watermark_column!r} must "
                                 "be a timestamp (its day is the partition)")
        if self.push is not None:
            for role, column in (("primary_key", self.primary_key),
                                 ("watermark_column", self.watermark_column)):
                if column not in self.push.columns:
                    raise ValueError(f"push.columns must declare the {role} {column!r}")
            if csv_duckdb_type(self.push.columns[self.watermark_column]) != "TIMESTAMPTZ":
                raise ValueError(f"push.columns: the watermark {self.watermark_column!r} must "
                                 "be a timestamp (its day is the partition)")
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        from blade_pipeline.config.pandera_models import SCHEMAS

        if value is not None and value not in SCHEMAS:
            raise ValueError(f"no Pandera model {value!r} in pandera_models.py (known: "
                             f"{', '.join(SCHEMAS)})")
        return value

    @property
    def model_name(self) -> str:
        """The Pandera model its rows are validated with."""
        return self.model or self.data_type

    @property
    def location(self) -> WarehouseTable | DatabaseTable | CsvDrop | PushEndpoint:
        """The table the rows come from (for CSV drops: the rows landed from its files)."""
        location = getattr(self, _LOCATION[self.kind])
        assert location is not None  # _location
        return location

    @property
    def table_label(self) -> str:
        """The table as a person names it: ``main.blade.t`` or ``postgres:blade.t``."""
        if self.csv is not None:
            return f"csv:{self.csv.folder}"
        if self.push is not None:
            return f"push:{self.name}"
        name = ".".join(self.location.parts)
        return name if self.kind == "databricks" else f"{self.kind}:{name}"

    @property
    def csv_folder(self) -> str | None:
        """The landing folder of a CSV source (None for the other kinds)."""
        return self.csv.folder if self.csv is not None else None

    @property
    def resource_key(self) -> str:
        """The resource that reads this source (``warehouse`` for Databricks)."""
        return RESOURCE_KEYS[self.kind]

    @property
    def catalog_data_source(self) -> str:
        """Data source name in the catalog service."""
        return f"BLADE:{self.data_type}"


_LOCATION = {"databricks": "warehouse", "postgres": "database", "mysql": "database",
             "csv": "csv", "push": "push"}


class SourcesFile(_Strict):
    sources: list[BladeSource]

    @model_validator(mode="after")
    def _unique(self) -> SourcesFile:
        for attr in ("name", "data_type", "item_id_prefix", "csv_folder"):
            values = [getattr(s, attr) for s in self.sources if getattr(s, attr) is not None]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {attr}: {', '.join(dupes)}")
        return self


def _describe(exc: ValidationError, raw: dict) -> str:
    lines = []
    entries = raw.get("sources") if isinstance(raw, dict) else None
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int) and \
                isinstance(entries, list) and loc[1] < len(entries) and \
                isinstance(entries[loc[1]], dict):
            entry = entries[loc[1]].get("name", f"#{loc[1] + 1}")
            field = ".".join(str(p) for p in loc[2:]) or "(entry)"
            where = f"entry {entry!r}, field {field!r}"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_sources(path: Path | str = SOURCES_FILE) -> list[BladeSource]:
    """Parse and validate a sources file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SourcesFileError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SourcesFileError(f"{path} is not valid YAML: {exc}") from None
    try:
        return SourcesFile.model_validate(raw).sources
    except ValidationError as exc:
        raise SourcesFileError(f"{path} is invalid:\n{_describe(exc, raw)}") from None


def configured_sources_file() -> Path:
    """``BLADE_SOURCES_FILE`` when set, else the package's sources.yaml."""
    return BladeSettings().sources_file or SOURCES_FILE


@functools.cache
def default_sources() -> tuple[BladeSource, ...]:
    """The sources of this deployment (:func:`configured_sources_file`), loaded once."""
    return tuple(load_sources(configured_sources_file()))


def source_for(data_type: str, sources: tuple[BladeSource, ...] | None = None) -> BladeSource:
    """The source declaring ``data_type``; a clear error listing the known ones otherwise."""
    sources = sources if sources is not None else default_sources()
    for source in sources:
        if source.data_type == data_type:
            return source
    known = ", ".join(s.data_type for s in sources)
    raise SourcesFileError(f"unknown data type {data_type!r}; known: {known}")
