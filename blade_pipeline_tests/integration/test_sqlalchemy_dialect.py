"""Clients built on the connector see the mock as a Databricks warehouse: SQLAlchemy's
``databricks`` dialect (databricks-sqlalchemy) reflects the Unity Catalog tables through
``SHOW SCHEMAS``, ``SHOW TABLES``/``VIEWS`` and the connector's metadata calls, and the SQL it
compiles runs."""

from __future__ import annotations

import pytest

from blade_pipeline_tests.conftest import WAREHOUSE_TOKEN, warehouse_url

sa = pytest.importorskip("sqlalchemy")
dialect = pytest.importorskip("databricks.sqlalchemy",
                              reason="databricks-sqlalchemy is part of .[dev]")


@pytest.fixture(scope="module")
def engine(start_warehouse):
    server = start_warehouse(500)
    engine = sa.create_engine(
        f"databricks://token:{WAREHOUSE_TOKEN}@127.0.0.1:{server.port}"
        "?http_path=/sql/1.0/warehouses/test&catalog=main&schema=blade",
        connect_args={"_connection_uri": warehouse_url(server), "enable_telemetry": False})
    yield engine
    engine.dispose()


def test_inspect_lists_schemas_tables_and_typed_columns(engine):
    inspector = sa.inspect(engine)
    assert {"blade", "default"} <= set(inspector.get_schema_names())
    assert inspector.get_table_names(schema="blade") == [
        "blade_maintenance_data", "blade_readiness_data", "blade_sortie_data",
        "blade_supply_data"]
    assert inspector.get_view_names(schema="blade") == []
    assert inspector.has_table("blade_supply_data", schema="blade")
    assert not inspector.has_table("nope", schema="blade")
    columns = {c["name"]: c["type"] for c in inspector.get_columns("blade_supply_data",
                                                                    schema="blade")}
    assert isinstance(columns["part_number"], sa.String)
    assert isinstance(columns["quantity_on_hand"], sa.Integer)
    assert (columns["unit_cost"].precision, columns["unit_cost"].scale) == (12, 2)
    assert isinstance(columns["last_modified"], dialect.TIMESTAMP_NTZ)  # a naive timestamp
    inspector.clear_cache()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE main.blade.zoned (at TIMESTAMP, d DATE)"))
    zoned = {c["name"]: c["type"] for c in inspector.get_columns("zoned", schema="blade")}
    assert isinstance(zoned["at"], dialect.TIMESTAMP) and isinstance(zoned["d"], sa.Date)


def test_the_sql_the_dialect_compiles_runs(engine):
    supply = sa.Table("blade_supply_data", sa.MetaData(), schema="blade", autoload_with=engine)
    query = (sa.select(supply.c.location, sa.func.count().label("n"))
             .where(supply.c.quantity_on_hand > sa.bindparam("q"))
             .group_by(supply.c.location).order_by(sa.desc("n")).limit(3))
    with engine.connect() as conn:
        rows = conn.execute(query, {"q": 0}).all()
        total = conn.execute(sa.text("SELECT count(*) FROM main.blade.blade_supply_data "
                                     "WHERE quantity_on_hand > :q"), {"q": 0}).scalar_one()
    assert 0 < len(rows) <= 3 and rows[0].n >= rows[-1].n
    assert sum(r.n for r in rows) <= total
