"""The one-pass screen names the same failures as Pandera itself, or stands aside."""

import datetime as dt
import decimal

import duckdb
import pandera.polars as pa
import polars as pl
import pytest

from blade_pipeline.config.pandera_models import SCHEMAS
from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.steps.row_screen import RowScreen

CASE_COLUMNS = ["failure_case", "column", "check", "index"]


def pandera_cases(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases.select(CASE_COLUMNS)
    return pl.DataFrame(schema={"failure_case": pl.String, "column": pl.String,
                                "check": pl.String, "index": pl.Int32})


def assert_same_cases(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    screened = RowScreen(model).failure_cases(frame)
    assert screened is not None, "the screen stood aside"
    expected = pandera_cases(model, frame)
    assert screened.select(CASE_COLUMNS).equals(expected), (screened, expected)
    return expected


@pytest.fixture(scope="module")
def generated() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    generator.create_tables(con, "blade")
    generator.seed(con, 20_000, 7, end=dt.date(2026, 11, 1), days=1, schema="blade")
    return con


@pytest.mark.parametrize("data_type", sorted(SCHEMAS))
def test_every_invalid_row_of_the_generator_is_named_as_pandera_names_it(generated, data_type):
    frame = pl.from_arrow(generated.sql(
        f"SELECT * FROM blade.{generator.TABLES[data_type]}").to_arrow_table())
    cases = assert_same_cases(SCHEMAS[data_type], frame)
    # every rule the generator breaks on purpose, not a vacuous comparison
    assert cases.height > 50 and cases["check"].n_unique() >= 4


class Edges(pa.DataFrameModel):
    reading: float = pa.Field(ge=0)  # not nullable: NaN counts as null
    cost: pl.Decimal(12, 2) = pa.Field(gt=0, nullable=True)
    label: str = pa.Field(nullable=True)
    start: pl.Datetime = pa.Field(nullable=True)
    stop: pl.Datetime = pa.Field(nullable=True)
    day: pl.Date = pa.Field(nullable=True)

    @pa.check("label", ignore_na=False, error="label must be set and short")
    @classmethod
    def short_label(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.len_chars() < 5)

    @pa.dataframe_check(error="stop before start, or no day")
    @classmethod
    def ordered(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("stop") >= pl.col("start")).alias("a"), pl.col("day").is_not_null())


def edges_frame() -> pl.DataFrame:
    t = dt.datetime(2026, 1, 1, 8)
    return pl.DataFrame({
        "reading": [1.5, float("nan"), None, -0.5, 2.0],
        "cost": [decimal.Decimal("1.00"), decimal.Decimal("0.00"), None,
                 decimal.Decimal("-3.10"), decimal.Decimal("2.50")],
        "label": ["ok", None, "far too long", "abc", "x"],
        "start": [t, t, None, t, t],
        "stop": [t, t - dt.timedelta(hours=1), t, None, t],
        "day": [dt.date(2026, 1, 1), None, dt.date(2026, 1, 2), dt.date(2026, 1, 3), None],
    }, schema_overrides={"cost": pl.Decimal(12, 2)})


def test_nan_decimals_ignore_na_false_and_multi_column_frame_checks_match_pandera():
    frame = edges_frame()
    cases = assert_same_cases(Edges, frame)
    assert set(cases["index"].to_list()) == {1, 2, 3, 4}


def test_a_clean_batch_has_no_failure_cases():
    frame = edges_frame()[[0]]
    assert RowScreen(Edges).failure_cases(frame).height == 0
    assert pandera_cases(Edges, frame).height == 0


def test_a_batch_of_another_shape_is_left_to_pandera():
    screen = RowScreen(Edges)
    assert screen.failure_cases(edges_frame().drop("label")) is None
    retyped = edges_frame().with_columns(pl.col("reading").fill_nan(0).cast(pl.Int64))
    assert screen.failure_cases(retyped) is None


class Aggregate(pa.DataFrameModel):
    value: float

    @pa.check("value", error="mean is positive")
    @classmethod
    def positive_mean(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).mean() > 0)


class Scalar(pa.DataFrameModel):
    value: float

    @pa.dataframe_check
    @classmethod
    def not_empty(cls, data: pa.PolarsData) -> bool:
        return data.lazyframe.collect().height > 0


class Unique(pa.DataFrameModel):
    value: float = pa.Field(unique=True)


@pytest.mark.parametrize("model", [Aggregate, Scalar, Unique])
def test_rules_that_are_not_one_verdict_per_row_are_left_to_pandera(model):
    assert RowScreen(model).failure_cases(pl.DataFrame({"value": [1.0, -5.0, 1.0]})) is None
