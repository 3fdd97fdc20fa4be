"""The `blade` command: dev services, demo, direct queries, connection checks."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from blade_pipeline.cli.push import add_push_commands

Handler = Callable[[argparse.Namespace], int]


def _graceful_sigterm() -> None:
    """SIGTERM -> KeyboardInterrupt, so servers close their databases cleanly."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


DEVSERVICES_EXTRA = "blade_pipeline[devservices]"


def _devservices_missing(command: str) -> int | None:
    """Exit code 2 with what to install when the dev services' server packages are absent."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "python_multipart")
               if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    print(f"blade {command}: error: the development services need the "
          f"{DEVSERVICES_EXTRA!r} extra (missing: {', '.join(missing)}); install it with "
          f"`pip install '{DEVSERVICES_EXTRA}'` (`make setup` does)", file=sys.stderr)
    return 2


def _cmd_mock_warehouse(args: argparse.Namespace) -> int:
    from blade_pipeline.devservices.warehouse.server import WarehouseConfig, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _graceful_sigterm()
    serve(WarehouseConfig(
        host=args.host, port=args.port, db_path=args.db, rows=args.rows, seed=args.seed,
        token=args.token, invalid_fraction=args.invalid_fraction, reseed=args.reseed,
        end_date=dt.date.fromisoformat(args.end_date) if args.end_date else None,
        days=args.days,
        change_interval=args.change_interval, change_rows=args.change_rows,
        latency_ms=args.latency_ms, fail_rate=args.fail_rate, fault_seed=args.fault_seed))
    return 0


def _cmd_mock_catalog(args: argparse.Namespace) -> int:
    if (refused := _devservices_missing("mock-catalog")) is not None:
        return refused
    from blade_pipeline.devservices.catalog.faults import FaultSettings
    from blade_pipeline.devservices.catalog.server import serve

    try:
        faults = FaultSettings(fail_rate=args.fail_rate, fail_status=args.fail_status,
                               retry_after_s=args.retry_after, fail_first=args.fail_first,
                               seed=args.fault_seed, latency_ms=args.latency_ms,
                               reject_ids=args.reject_ids)
    except ValueError as exc:
        print(f"blade mock-catalog: error: {exc}", file=sys.stderr)
        return 2
    _graceful_sigterm()
    serve(host=args.host, port=args.port, db_path=args.db, token=args.token,
          max_body_bytes=args.max_body_mb * 1024 * 1024, faults=faults)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    if (refused := _devservices_missing("demo")) is not None:
        return refused
    from blade_pipeline.cli.demo import DemoSettings, run_demo

    _graceful_sigterm()
    return run_demo(DemoSettings(home=Path(args.home), rows=args.rows,
                                 warehouse_port=args.warehouse_port,
                                 catalog_port=args.catalog_port,
                                 dagster_port=args.dagster_port,
                                 change_interval=args.change_interval,
                                 backfill_days=args.backfill_days, lake=args.lake,
                                 s3_port=args.s3_port, drop_interval=args.drop_interval,
                                 ingest_port=args.ingest_port, flight_port=args.flight_port,
                                 push_interval=args.push_interval))


def _cmd_bench(args: argparse.Namespace) -> int:
    if (refused := _devservices_missing("bench")) is not None:
        return refused
    from blade_pipeline.bench.run import main as bench_main

    return bench_main(args)


def _warehouse():  # -> DatabricksWarehouse (resolved, outside Dagster)
    from blade_pipeline.sources.databricks import DatabricksWarehouse

    return DatabricksWarehouse.from_env().process_config_and_initialize()


def _reader(kind: str):  # -> the resource reading sources of ``kind`` (resolved)
    if kind in ("postgres", "mysql"):
        from blade_pipeline.defs.resources import database_from_env

        return database_from_env(kind).process_config_and_initialize()
    if kind == "csv":  # values, not EnvVars: a nested resource is not initialized alone
        from blade_pipeline.config.settings import DEMO_LAKE_URI, DEMO_LANDING_URI, BladeSettings
        from blade_pipeline.sources.csv_drops import CsvDrops
        from blade_pipeline.storage.lake import ParquetLake

        settings = BladeSettings.load()
        return CsvDrops(landing_uri=settings.landing_uri or DEMO_LANDING_URI,
                        s3_endpoint=settings.s3_endpoint,
                        s3_max_attempts=settings.s3_max_attempts,
                        lake=ParquetLake(uri=settings.lake_uri or DEMO_LAKE_URI,
                                         s3_endpoint=settings.s3_endpoint,
                                         s3_max_attempts=settings.s3_max_attempts))
    return _warehouse()


def _cmd_test_connection(args: argparse.Namespace) -> int:
    from blade_pipeline.sources.reader import SourceError

    warehouse = _reader(args.kind)
    try:
        check = warehouse.test_connection()
    except SourceError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"OK: {check.endpoint} answered in {check.round_trip_ms} ms; "
          f"catalogs: {', '.join(check.catalogs) or '(none)'}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    import polars as pl

    from blade_pipeline.config.sources import SourcesFileError, source_for
    from blade_pipeline.sources.reader import SourceError
    from blade_pipeline.sources.user_filters import UnsafeFilterError, select_sql

    try:
        source = source_for(args.data_type)
        sql = select_sql(source, args.where, args.limit, order_by_key=args.order_by_key)
        table = _reader(source.kind).query_arrow(sql)
    except (SourcesFileError, UnsafeFilterError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    frame = pl.from_arrow(table)
    with pl.Config(tbl_rows=max(frame.height, 1), tbl_cols=-1, fmt_str_lengths=40,
                   tbl_width_chars=240, tbl_hide_dataframe_shape=True):
        print(frame)
    print(f"{frame.height} row(s) from {source.table_label}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import polars as pl

    from blade_pipeline.sources.reader import SourceError

    try:
        table = _warehouse().query_arrow(args.statement)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=240,
                   tbl_hide_dataframe_shape=True):
        print(pl.from_arrow(table))
    return 0


def _schema_history(data_type: str):  # -> SchemaHistory of the configured lake
    from blade_pipeline.config.sources import source_for
    from blade_pipeline.steps.schema_versions import SchemaHistory
    from blade_pipeline.storage.lake import ParquetLake

    source = source_for(data_type)
    return SchemaHistory(ParquetLake.from_env().process_config_and_initialize(),
                         source.data_type)


def _record_act(data_type: str, metadata: dict) -> str:
    """Report an accept/pin on the staged asset's timeline in the Dagster instance (when
    DAGSTER_HOME names one): where the team looks."""
    import os

    if not os.environ.get("DAGSTER_HOME"):
        return "DAGSTER_HOME is not set: the act is logged in the lake only"
    import dagster as dg

    from blade_pipeline.config.sources import source_for
    from blade_pipeline.defs.keys import staged_key

    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(dg.AssetObservation(
            asset_key=staged_key(source_for(data_type)), metadata=metadata))
    return "recorded on the staged asset's timeline in Dagster"


def _schema_act(args: argparse.Namespace, history) -> int:  # accept / pin
    import getpass

    newest = history.newest()
    if newest is None:
        print(f"error: {args.data_type}: no schema version yet (none staged)", file=sys.stderr)
        return 1
    before = history.expected_number()
    pinned = args.schema_command == "pin"
    target = history.version(args.version) if pinned else newest
    by = getpass.getuser()
    chosen = history.set_expected(target.version, args.schema_command, by, args.reason or "",
                                  pinned=pinned)
    log = logging.getLogger("blade.schema")
    changes = "; ".join(c.describe() for c in _diff_of(history, before, target.version))
    what = (f"{args.data_type}: schema v{chosen.version} is now the expected version "
            f"(was v{before}); {args.schema_command} by {by}"
            + (f": {args.reason}" if args.reason else "")
            + (f"; changes from v{before}: {changes}" if changes else ""))
    log.warning(what)
    where = _record_act(args.data_type, {
        "schema_act": args.schema_command, "schema_expected_version": chosen.version,
        "schema_previous_version": before, "by": by, "reason": args.reason or "",
        "pinned": pinned})
    print(what)
    print("later runs check against it" + (
        " and adopt no newer version until `blade schema accept`" if pinned else "")
        + f"; {where}. Days staged under a blocked change: re-run them (the catalog step is "
          "enough when the staged rows fit).")
    return 0


def _diff_of(history, before: int | None, after: int) -> list:
    from blade_pipeline.steps.schema_versions import diff

    if before is None or before == after:
        return []
    return diff(history.version(before).columns, history.version(after).columns)


def _cmd_schema(args: argparse.Namespace) -> int:
    from blade_pipeline.config.sources import SourcesFileError
    from blade_pipeline.steps.schema_versions import diff
    from blade_pipeline.storage.lake import LakeError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        history = _schema_history(args.data_type)
        if args.schema_command in ("accept", "pin"):
            return _schema_act(args, history)
        if args.schema_command == "history":
            versions = history.versions()
            if not versions:
                print(f"{args.data_type}: no schema version yet (none staged)")
            expected, chosen = history.expected_number(), history.expected()
            for version in versions:
                what = "; ".join(c.describe() for c in version.changes) or (
                    "first version" if version.version == 1 else "no change")
                mark = ("*" if version.version == expected else " ")
                print(f"{mark}v{version.version}  {version.observed_at}  run "
                      f"{version.run_id[:8]}  {len(version.columns)} columns  {what}")
            if expected is not None:
                print(f"* expected: v{expected}" + (" (pinned)" if chosen and chosen.pinned
                                                   else ""))
            for act in chosen.acts if chosen else ():
                print(f"  {act['at']}  {act['act']} v{act['version']} (was "
                      f"v{act['previous']}) by {act['by']}"
                      + (f": {act['reason']}" if act.get("reason") else ""))
            return 0
        before, after = history.version(args.v1), history.version(args.v2)
    except (SourcesFileError, LakeError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1
    changes = diff(before.columns, after.columns)
    for change in changes:
        print(change.describe())
    print(f"{len(changes)} change(s) from v{before.version} to v{after.version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="start the mock services and the Dagster UI")
    demo.add_argument("--home", default=".blade", help="state directory (db files, logs)")
    demo.add_argument("--rows", type=int, default=20_000, help="warehouse rows per table")
    demo.add_argument("--warehouse-port", type=int, default=8765)
    demo.add_argument("--catalog-port", type=int, default=8080)
    demo.add_argument("--dagster-port", type=int, default=3000)
    demo.add_argument("--backfill-days", type=int, default=730,
                      help="days of every data type to ingest at start, one range run per "
                           "data type (default 730: the whole history the mock warehouse "
                           "holds; 0 = none)")
    demo.add_argument("--change-interval", type=float, default=60.0,
                      help="seconds between warehouse change-feed ticks (0 = off)")
    demo.add_argument("--lake", choices=["local", "s3"], default="local",
                      help="where the lake lives: <home>/lake (default), or a bucket on a "
                           "loopback S3 API (moto's server, in memory: gone when the demo "
                           "stops) started by the demo")
    demo.add_argument("--s3-port", type=int, default=9000, help="port of the demo's S3 API")
    demo.add_argument("--drop-interval", type=float, default=60.0,
                      help="seconds between the CSV files dropped for the kind: csv source "
                           "(0 = none)")
    demo.add_argument("--ingest-port", type=int, default=8090, help="port of the ingest API")
    demo.add_argument("--flight-port", type=int, default=8815,
                      help="port of the ingest server's Arrow Flight endpoint")
    demo.add_argument("--push-interval", type=float, default=10.0,
                      help="seconds between the demo client's live batches of sortie events "
                           "to the kind: push source (0 = no ingest server, no client)")
    demo.set_defaults(handler=_cmd_demo)

    wh = sub.add_parser("mock-warehouse", help="run the mock Databricks SQL warehouse (dev)")
    wh.add_argument("--host", default="127.0.0.1")
    wh.add_argument("--port", type=int, default=8765)
    wh.add_argument("--db", default=".blade/warehouse.duckdb", help="DuckDB file (catalog main)")
    wh.add_argument("--rows", type=int, default=20_000, help="rows per table when seeding")
    wh.add_argument("--seed", type=int, default=42, help="generator seed (same seed, same rows)")
    wh.add_argument("--token", default="dev-warehouse-token", help="access token clients send")
    wh.add_argument("--invalid-fraction", type=float, default=0.01,
                    help="share of deliberately invalid rows")
    wh.add_argument("--end-date", help="seeded history ends on this date (YYYY-MM-DD; "
                    "default today UTC)")
    wh.add_argument("--days", type=int, default=730,
                    help="seeded history spans this many days before --end-date")
    wh.add_argument("--reseed", action="store_true", help="regenerate tables even if present")
    wh.add_argument("--change-interval", type=float, default=0.0, metavar="SECONDS",
                    help="every SECONDS insert and modify rows (last_modified = now); 0 = off")
    wh.add_argument("--change-rows", type=int, default=5,
                    help="rows inserted and rows modified per table per change tick")
    wh.add_argument("--latency-ms", type=int, default=0, help="added latency per Thrift call")
    wh.add_argument("--fail-rate", type=float, default=0.0,
                    help="share of ExecuteStatement calls answered with HTTP 503")
    wh.add_argument("--fault-seed", type=int, help="seed of the fault injector (reproducible)")
    wh.set_defaults(handler=_cmd_mock_warehouse)

    bench = sub.add_parser("bench", help="throughput and peak RSS of every stage")
    from blade_pipeline.bench.run import build_parser as bench_parser

    bench_parser(bench)
    bench.set_defaults(handler=_cmd_bench)

    tc = sub.add_parser("test-connection", help="check the configured warehouse answers")
    tc.add_argument("--kind", choices=["databricks", "postgres", "mysql", "csv"],
                    default="databricks",
                    help="which source connection: the Databricks warehouse (default), "
                         "BLADE_POSTGRES_URL, BLADE_MYSQL_URL or BLADE_LANDING_URI (csv: its "
                         "folders are listed)")
    tc.set_defaults(handler=_cmd_test_connection)

    q = sub.add_parser("query", help="print rows of a BLADE data type from the warehouse")
    q.add_argument("data_type", help="maintenance, sortie, supply, readiness, ...")
    q.add_argument("--where", help="SQL filter, e.g. \"priority = 'HIGH'\"")
    q.add_argument("--limit", type=int, default=10)
    q.add_argument("--order-by-key", action="store_true", help="sort by the primary key")
    q.set_defaults(handler=_cmd_query)

    statement = sub.add_parser(
        "sql", help="run one Databricks SQL statement on the configured warehouse, e.g. "
                    "ALTER TABLE … ADD COLUMN on the demo's mock to watch a schema change")
    statement.add_argument("statement")
    statement.set_defaults(handler=_cmd_sql)

    schema = sub.add_parser("schema", help="a source's schema versions (in the lake)")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True,
                                       metavar="SUBCOMMAND")
    history = schema_sub.add_parser("history", help="every version and what changed")
    history.add_argument("data_type")
    versions = schema_sub.add_parser("diff", help="the changes between two versions")
    versions.add_argument("data_type")
    versions.add_argument("v1", type=lambda v: int(v.lstrip("v")), help="e.g. 1 or v1")
    versions.add_argument("v2", type=lambda v: int(v.lstrip("v")), help="e.g. 2 or v2")
    accept = schema_sub.add_parser(
        "accept", help="make the newest observed version the expected one (after review)")
    accept.add_argument("data_type")
    accept.add_argument("--reason", help="why (kept with the act)")
    pin = schema_sub.add_parser(
        "pin", help="check later runs against an earlier version (roll back), adopting none")
    pin.add_argument("data_type")
    pin.add_argument("version", type=lambda v: int(v.lstrip("v")), help="e.g. 1 or v1")
    pin.add_argument("--reason", help="why (kept with the act)")
    schema.set_defaults(handler=_cmd_schema)

    cat = sub.add_parser("mock-catalog", help="run the catalog service (dev stand-in)")
    cat.add_argument("--host", default="127.0.0.1")
    cat.add_argument("--port", type=int, default=8080)
    cat.add_argument("--db", default=".blade/catalog.sqlite3", help="SQLite file (durable store)")
    cat.add_argument("--token", default="dev-catalog-token", help="bearer token clients must send")
    cat.add_argument("--max-body-mb", type=int, default=64, help="request body limit (MiB)")
    faults = cat.add_argument_group("fault injection (tests; requests to /api/v1/items*)")
    faults.add_argument("--fail-rate", type=float, default=0.0, metavar="R",
                        help="share (0..1) of requests answered with --fail-status, unprocessed")
    faults.add_argument("--fail-first", type=int, default=0, metavar="N",
                        help="the first N requests fail (a burst), then --fail-rate applies")
    faults.add_argument("--fail-status", type=int, default=503, metavar="CODE",
                        help="status of injected failures (e.g. 503, 429)")
    faults.add_argument("--retry-after", type=int, metavar="SECONDS",
                        help="send Retry-After: SECONDS with injected failures")
    faults.add_argument("--fault-seed", type=int, help="seed of the fault injector (reproducible)")
    faults.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                        help="latency added to each of those requests")
    faults.add_argument("--reject-ids", metavar="REGEX",
                        help="refuse batch items whose item_id matches (a policy rejection "
                             "per line, the rest stored)")
    cat.set_defaults(handler=_cmd_mock_catalog)
    add_push_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)

