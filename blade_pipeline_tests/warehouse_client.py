"""The unmodified databricks-sql-connector on a mock warehouse process, over each backend."""

from __future__ import annotations

from typing import Any

from databricks import sql as dbsql

from blade_pipeline_tests.conftest import WAREHOUSE_TOKEN, warehouse_url
from blade_pipeline_tests.servers import ServerProcess

#: How the connector fetches: over Thrift, or over the Statement Execution API with Arrow files
#: behind links (its default), Arrow attached to the answer when small (hybrid), or JSON inline.
MODES: dict[str, dict[str, Any]] = {
    "thrift": {},
    "sea": {"use_sea": True},
    "sea-hybrid": {"use_sea": True, "use_hybrid_disposition": True},
    "sea-json": {"use_sea": True, "use_cloud_fetch": False},
}
BACKENDS = ["thrift", "sea"]


def connect(server: ServerProcess, mode: str = "thrift", **kwargs: Any
            ) -> dbsql.client.Connection:
    """The connector on ``server`` in one of MODES, with few quick retries (the SEA client
    takes scheme and port apart; the Thrift one the whole URL)."""
    options = {**MODES[mode], "access_token": WAREHOUSE_TOKEN,
               "http_path": "/sql/1.0/warehouses/test", "enable_telemetry": False,
               "_retry_stop_after_attempts_count": 3, "_retry_stop_after_attempts_duration": 10,
               "_retry_delay_max": 5, **kwargs}
    if options.get("use_sea"):
        return dbsql.connect(server_hostname="http://127.0.0.1", _port=server.port, **options)
    return dbsql.connect(server_hostname=f"127.0.0.1:{server.port}",
                         _connection_uri=warehouse_url(server), **options)
