"""Case 11: no token appears in the runs' event logs (log messages, asset metadata,
observations, check results), in exception text or anywhere in the lakes (local and S3: the S3
secret key is one of the secrets). This case searches its own faulty runs (and one on S3), so it
holds in any order and alone; every other fault case's runs are searched the same way when the
session's ``recorded`` fixture is torn down (``faults/conftest.py``)."""

from __future__ import annotations

from blade_pipeline.config.sources import source_for
from blade_pipeline.storage.lake import ParquetLake
from blade_pipeline_tests.faults.conftest import Recorded, make_resources, run
from blade_pipeline_tests.faults.secrets_scan import (
    WRONG_CATALOG_TOKEN,
    WRONG_WAREHOUSE_TOKEN,
    secrets_found,
)


def test_11_no_token_in_logs_metadata_errors_or_lake(
        fault_warehouse, start_catalog, tmp_path, dagster_instance, s3_server, s3_lake_uri):
    catalog = start_catalog()
    recorded = Recorded()
    for number, overrides in enumerate([{"warehouse_token": WRONG_WAREHOUSE_TOKEN},
                                        {"catalog_token": WRONG_CATALOG_TOKEN}, {}, {}]):
        res = make_resources(fault_warehouse, catalog, tmp_path / f"lake{number}", **overrides)
        if number == 3:
            res["lake"] = ParquetLake(uri=s3_lake_uri, s3_endpoint=s3_server.base_url)
        result = run(source_for("readiness"), res, dagster_instance, recorded)
        assert result.success == (not overrides), recorded.texts

    assert len(recorded.run_ids) == 4 and recorded.texts
    assert any(uri.startswith("s3://") for uri in recorded.lakes)
    found, files = secrets_found(recorded, dagster_instance, s3_server.base_url)
    assert files > 0
    assert not found, found
