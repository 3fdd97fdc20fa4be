"""Case 10 in full: four partitions of one type run at once, each as its own ``dagster job
execute`` process on the PostgreSQL instance (or as one range run over the four days), and
while they upload, rows of one day change in
the warehouse and the change sensor's run for that day joins them (the same partition twice at
once). End state: every key of the four days once in the catalog with its newest row; a
version above 1 only where the data really changed (a key on two days, an updated row).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.definitions import defs
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.conftest import CATALOG_TOKEN, WAREHOUSE_TOKEN, warehouse_url
from blade_pipeline_tests.faults.conftest import (
    DAY,
    ROWS,
    WAREHOUSE_ARGS,
    catalog_items,
    expected_ids,
    expected_quarantined,
    make_resources,
    quarantine,
    range_tags,
)

pytestmark = [pytest.mark.slow, pytest.mark.extended]

SOURCE = source_for("maintenance")
DAYS = [(dt.date.fromisoformat(DAY) - dt.timedelta(days=n)).isoformat() for n in range(3, -1, -1)]
UPDATED = 25  # rows of DAY the warehouse changes while the four runs upload


def launch(tags: dict[str, str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster job execute`` of the type's job, as its own process (a run of its own)."""
    dagster = Path(sys.executable).parent / "dagster"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(dagster), "job", "execute", "-m", "blade_pipeline.definitions",
             "-j", f"blade_{SOURCE.data_type}_job", "--tags", json.dumps(tags)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def wait_staged(lake: ParquetLake, days: list[str], procs: list[subprocess.Popen],
                timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not all(Path(lake.partition_dir(SOURCE.data_type, d), "part-0.parquet").exists()
                  for d in days):
        assert time.monotonic() < deadline, "the partitions were never staged"
        assert all(p.poll() in (None, 0) for p in procs), "a run failed before staging"
        time.sleep(0.2)


def newest_staged(lake: ParquetLake) -> dict[str, tuple[str, dt.datetime, int]]:
    """item_id -> (content hash, last_modified, days holding it) of the newest staged row."""
    table = pa.concat_tables(
        pq.read_table(Path(lake.partition_dir(SOURCE.data_type, d), "part-0.parquet"),
                      columns=["item_id", "content_hash", "last_modified"]) for d in DAYS)
    table = table.sort_by([("item_id", "ascending"), ("last_modified", "descending")])
    ids = table.column("item_id")
    counts = dict(zip(*(c.to_pylist() for c in pc.value_counts(ids).flatten()), strict=True))
    newest: dict[str, tuple[str, dt.datetime, int]] = {}
    for item_id, content_hash, stamp in zip(*(table.column(c).to_pylist() for c in
                                              ("item_id", "content_hash", "last_modified")),
                                            strict=True):
        newest.setdefault(item_id, (content_hash, stamp, counts[item_id]))
    return newest


@pytest.mark.parametrize("ranged", [False, True], ids=["four-runs", "one-range-run"])
def test_10_four_partitions_and_the_change_sensor_at_once(
        ranged, start_warehouse, start_catalog, tmp_path, pg_dagster_home, pg_url,
        dagster_instance, reference_db):
    warehouse = start_warehouse(ROWS, *WAREHOUSE_ARGS)  # its own: this case changes rows
    catalog = start_catalog("--latency-ms", "700")  # slow, small batches: the day's first
    # run still uploads when the sensor's run of the same day starts uploading
    lake_dir = tmp_path / "lake"
    res = make_resources(warehouse, catalog, lake_dir)
    env = {**os.environ, "DAGSTER_HOME": str(pg_dagster_home), "DAGSTER_PG_URL": pg_url,
           "BLADE_WAREHOUSE_URL": warehouse_url(warehouse), "DATABRICKS_TOKEN": WAREHOUSE_TOKEN,
           "BLADE_CATALOG_URL": catalog.base_url, "BLADE_CATALOG_TOKEN": CATALOG_TOKEN,
           "BLADE_LAKE_URI": str(lake_dir), "BLADE_CATALOG_BATCH_SIZE": "100"}
    sensor = defs.get_sensor_def(f"blade_{SOURCE.data_type}_changes")

    def tick(cursor: str | None):
        with dg.build_sensor_context(instance=dagster_instance, cursor=cursor,
                                     repository_def=defs.get_repository_def(),
                                     resources={"warehouse": res["warehouse"]}) as context:
            return sensor.evaluate_tick(context)

    first = tick(None)  # the first tick records the newest watermark
    assert not first.run_requests and first.cursor

    if ranged:  # the four days in one run, the sensor's run of DAY beside it
        procs = [launch(range_tags(DAYS), env, tmp_path / "run-range.log")]
    else:
        procs = [launch({"dagster/partition": day}, env, tmp_path / f"run-{day}.log")
                 for day in DAYS]
    wait_staged(res["lake"], DAYS, procs)
    pk = SOURCE.primary_key
    changed = [r[0] for r in reference_db.execute(
        f"SELECT {pk} FROM blade.blade_maintenance_data WHERE {pk} IN (SELECT {pk} FROM "
        f"blade.blade_maintenance_data GROUP BY {pk} HAVING count(*) = 1) "
        f"AND CAST(last_modified AS DATE) = $day AND {pk} IN $valid ORDER BY hash({pk}) LIMIT $n",
        {"day": DAY, "n": UPDATED, "valid": sorted(
            i.split("-", 1)[1] for i in expected_ids(reference_db, SOURCE.data_type, DAY))},
    ).fetchall()]
    assert len(changed) == UPDATED
    res["warehouse"].query_arrow(
        f"UPDATE main.blade.blade_maintenance_data SET labor_hours = labor_hours + 1, "
        f"last_modified = TIMESTAMP '{DAY} 23:59:59.5' WHERE {pk} IN ("
        + ", ".join(f"'{key}'" for key in changed) + ")")
    second = tick(first.cursor)
    [request] = second.run_requests
    assert request.partition_key == DAY
    procs.append(launch({**request.tags, "dagster/partition": DAY}, env,
                        tmp_path / "run-sensor.log"))
    for proc in procs:
        assert proc.wait(timeout=300) == 0, (tmp_path / "run-sensor.log").read_text()[-3000:]

    newest = newest_staged(res["lake"])
    items = catalog_items(res["catalog"], SOURCE.catalog_data_source)
    ids = [item["item_id"] for item in items]
    assert len(ids) == len(set(ids)), "duplicate item ids in the catalog"
    expected = set().union(*(expected_ids(reference_db, SOURCE.data_type, d) for d in DAYS))
    assert set(ids) == expected == set(newest)
    stale = [i["item_id"] for i in items if i["content_hash"] != newest[i["item_id"]][0]]
    assert not stale, f"not the newest row in the catalog: {stale[:5]}"
    updated = {f"{SOURCE.item_id_prefix}-{key}" for key in changed}
    assert all(newest[i][1] == dt.datetime.fromisoformat(f"{DAY} 23:59:59.5") for i in updated)
    bumped = [(i["item_id"], i["version"]) for i in items
              if i["version"] > (2 if i["item_id"] in updated or newest[i["item_id"]][2] > 1
                                 else 1)]
    assert not bumped, f"version bumped without a data change: {bumped[:5]}"
    for day in DAYS:
        assert quarantine(res["lake"], SOURCE.data_type, day).num_rows == \
            expected_quarantined(reference_db, SOURCE.data_type, day)
