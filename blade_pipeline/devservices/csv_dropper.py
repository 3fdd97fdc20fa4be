"""A supplier that drops CSV exports (the demo's ``kind: csv`` source).

Every ``interval_s`` a file of the generator's supply rows, stamped with the current time as
their ``last_modified``, is written to the landing folder — under a hidden name, then renamed,
as a careful producer does — with one broken line appended, so the quarantine of unparsable
lines shows in the UI.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb

from blade_pipeline.devservices.warehouse import generator

BROKEN_LINE = "4210-01-000-0000,Broken export line,lots,1,1.00,A1,A,UNCLASS,{ts}\n"


class CsvDropper:
    """Drops ``rows_per_file`` supply rows as ``supply-<UTC time>.csv`` into ``folder``."""

    def __init__(self, folder: Path, rows_per_file: int = 200, seed: int = 11,
                 pool_rows: int = 20_000):
        self.folder, self.rows_per_file = folder, rows_per_file
        self.con = duckdb.connect()
        generator.seed(self.con, pool_rows, seed, days=30, invalid_fraction=0.01,
                       schema="blade")
        self.offset, self.pool_rows = 0, pool_rows
        self._stop = threading.Event()

    def drop(self) -> Path:
        """Write one file now; returns its path."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        name = f"supply-{now:%Y%m%dT%H%M%S}.csv"
        self.folder.mkdir(parents=True, exist_ok=True)
        temp, path = self.folder / f".{name}.part", self.folder / name
        stamp = now.isoformat(sep=" ", timespec="microseconds")
        self.con.execute(
            f"COPY (SELECT * REPLACE (TIMESTAMP '{stamp}' - to_microseconds("
            f"CAST(random() * 60e6 AS BIGINT)) AS last_modified) "
            f"FROM blade.{generator.TABLES['supply']} ORDER BY part_number "
            f"LIMIT {self.rows_per_file} OFFSET {self.offset}) TO '{temp}' "
            "(HEADER, DELIMITER ',')")
        with temp.open("a") as handle:
            handle.write(BROKEN_LINE.format(ts=stamp))
        temp.rename(path)
        self.offset = (self.offset + self.rows_per_file) % max(
            self.pool_rows - self.rows_per_file, 1)
        return path

    def run(self, interval_s: float) -> threading.Thread:
        """Drop a file now and every ``interval_s`` in a background thread until ``stop``."""

        def loop() -> None:
            while not self._stop.is_set():
                self.drop()
                self._stop.wait(interval_s)

        thread = threading.Thread(target=loop, name="csv-dropper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
