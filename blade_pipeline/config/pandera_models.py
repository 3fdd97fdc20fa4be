"""Pandera models (polars backend): one per BLADE data type, plus the BLADE item model.

Row-level rules only (types, nullability, enums, ranges, key patterns, cross-field rules):
a rule's verdict on a row depends on that row alone (validation evaluates them in one pass,
``steps.row_screen``); key uniqueness across a whole partition is enforced by the ingest step,
which sees every batch.
Adding a data type = one model here (registered in ``SCHEMAS``) + one entry in sources.yaml.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import NamedTuple

import pandera.polars as pa
import polars as pl
import pyarrow
from pandera.engines.polars_engine import Decimal

TAIL_NUMBER = r"^\d{2}-\d{4}$"
NINE_DIGITS = r"^\d{9}$"
NSN = r"^\d{4}-\d{2}-\d{3}-\d{4}$"
EARLIEST = dt.date(1990, 1, 1)
CLASSIFICATIONS = ["UNCLASS", "CUI"]


class _BladeRow(pa.DataFrameModel):
    """Columns every BLADE table has."""

    classification: str = pa.Field(isin=CLASSIFICATIONS, nullable=True)
    last_modified: pl.Datetime = pa.Field(nullable=False)

    class Config:
        strict = False  # extra columns are schema drift: recorded, not fatal
        coerce = False


class MaintenanceRecord(_BladeRow):
    record_id: str = pa.Field(str_matches=NINE_DIGITS)
    tail_number: str = pa.Field(str_matches=TAIL_NUMBER)
    aircraft_type: str = pa.Field(nullable=True)
    maint_type: str = pa.Field(
        isin=["SCHEDULED", "UNSCHEDULED", "INSPECTION", "MODIFICATION", "TCTO"])
    description: str = pa.Field(nullable=True)
    due_date: pl.Date = pa.Field(ge=EARLIEST, nullable=True)
    priority: str = pa.Field(isin=["HIGH", "MEDIUM", "LOW"])
    status: str = pa.Field(isin=["OPEN", "IN_PROGRESS", "DEFERRED", "COMPLETED", "CANCELLED"])
    labor_hours: float = pa.Field(ge=0, nullable=True)
    base: str = pa.Field(nullable=True)


class SortieRecord(_BladeRow):
    sortie_id: str = pa.Field(str_matches=NINE_DIGITS)
    tail_number: str = pa.Field(str_matches=TAIL_NUMBER)
    aircraft_type: str = pa.Field(nullable=True)
    mission_type: str = pa.Field(
        isin=["TRAINING", "COMBAT", "TRANSPORT", "REFUEL", "ISR", "TEST"])
    takeoff_time: pl.Datetime = pa.Field(nullable=True)
    landing_time: pl.Datetime = pa.Field(nullable=True)
    flight_hours: float = pa.Field(ge=0, nullable=True)
    base: str = pa.Field(nullable=True)
    status: str = pa.Field(isin=["SCHEDULED", "COMPLETED", "CANCELLED", "ABORTED"])

    @pa.dataframe_check(error="landing_time is before takeoff_time")
    @classmethod
    def lands_after_takeoff(cls, data: pa.PolarsData) -> pl.LazyFrame:
        landing, takeoff = pl.col("landing_time"), pl.col("takeoff_time")
        return data.lazyframe.select(
            landing.is_null() | takeoff.is_null() | (landing >= takeoff))


class SupplyRecord(_BladeRow):
    part_number: str = pa.Field(str_matches=NSN)
    nomenclature: str = pa.Field(nullable=False)
    quantity_on_hand: pl.Int32 = pa.Field(ge=0)
    reorder_point: pl.Int32 = pa.Field(ge=0, nullable=True)
    unit_cost: Decimal(12, 2) = pa.Field(gt=0, nullable=True)
    location: str = pa.Field(nullable=True)
    condition_code: str = pa.Field(isin=list("ABCDEFGH"))


class ReadinessRecord(_BladeRow):
    report_id: str = pa.Field(str_matches=NINE_DIGITS)
    tail_number: str = pa.Field(str_matches=TAIL_NUMBER)
    aircraft_type: str = pa.Field(nullable=True)
    report_date: pl.Date = pa.Field(ge=EARLIEST)
    status: str = pa.Field(isin=["FMC", "PMC", "NMC"])
    reason: str = pa.Field(nullable=True)
    base: str = pa.Field(nullable=True)

    @pa.dataframe_check(error="report_date is after last_modified")
    @classmethod
    def reported_before_modified(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A report cannot be dated after the row was last written (a future date is a
        malformed row, e.g. the generator's ``wrong_shape`` report_date)."""
        reported, modified = pl.col("report_date"), pl.col("last_modified").dt.date()
        return data.lazyframe.select(
            reported.is_null() | modified.is_null() | (reported <= modified))


class BladeItem(pa.DataFrameModel):
    """What reaches the catalog (DESIGN §3); the staged Parquet holds exactly these columns."""

    item_id: str = pa.Field(unique=True, str_matches=r"^[A-Z][A-Z0-9]*-\S+$")
    data_type: str
    data: str = pa.Field(str_startswith="{")
    classification: str
    last_modified: pl.Datetime
    content_hash: str = pa.Field(str_matches=r"^[0-9a-f]{64}$")
    metadata: str = pa.Field(str_startswith="{")

    class Config:
        strict = True
        coerce = False


#: data_type -> row model
SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "maintenance": MaintenanceRecord,
    "sortie": SortieRecord,
    "supply": SupplyRecord,
    "readiness": ReadinessRecord,
}


def row_model(data_type: str) -> type[pa.DataFrameModel]:
    """The Pandera model of a data type; a clear error if none is registered."""
    try:
        return SCHEMAS[data_type]
    except KeyError:
        raise KeyError(f"no Pandera model registered for data type {data_type!r} in "
                       f"blade_pipeline/config/pandera_models.py "
                       f"(known: {', '.join(SCHEMAS)})") from None


def required_columns(data_type: str) -> dict[str, str]:
    """Column name -> polars dtype name that the model requires (for drift checks)."""
    schema = row_model(data_type).to_schema()
    return {name: str(col.dtype) for name, col in schema.columns.items()}


class ModelColumn(NamedTuple):
    arrow_type: pyarrow.DataType
    nullable: bool


@functools.cache
def model_columns(data_type: str) -> dict[str, ModelColumn]:
    """Column name -> the Arrow type the model requires and whether it admits NULL."""
    schema = row_model(data_type).to_schema()
    return {name: ModelColumn(pl.Series(name, [], dtype=col.dtype.type).to_arrow().type,
                              bool(col.nullable))
            for name, col in schema.columns.items()}
