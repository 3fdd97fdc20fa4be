"""The demo's push client: a squadron's system pushing sortie events to the ingest API.

At start it pushes the last ``history_days`` days of events (``batch_rows`` records a batch, as
Arrow IPC streams), then every ``interval_s`` a batch of events stamped now; some of them are
updates of sorties already pushed (same ``sortie_id``, newer ``last_modified``). The records
come from the warehouse's generator, with its ~1% of invalid rows, so the quarantine shows.
Each batch is retried with its own key until acknowledged (``push.client``).
"""

from __future__ import annotations

import datetime as dt
import threading

import duckdb
import pyarrow as pa

from blade_pipeline.devservices.warehouse import generator
from blade_pipeline.push.client import PushClient, PushRefused

TENANT = "demo-squadron"


class DemoPusher:
    """Pushes sortie events to ``source`` of the ingest API at ``url``."""

    def __init__(self, url: str, token: str, source: str, columns: list[str], *,
                 history_rows: int = 5_000, history_days: int = 7, batch_rows: int = 1_000,
                 live_rows: int = 100, seed: int = 17) -> None:
        self.client = PushClient(url, token)
        self.source, self.batch_rows, self.live_rows = source, batch_rows, live_rows
        self.con = duckdb.connect()
        generator.seed(self.con, history_rows, seed, days=history_days, schema="blade")
        self.pool = (self.con.table(f"blade.{generator.TABLES['sortie']}")
                     .select(*columns).order("last_modified").arrow())
        if isinstance(self.pool, pa.RecordBatchReader):
            self.pool = self.pool.read_all()
        self.sent = self.records = 0
        # batch ids unique to this run: the log's dedupe window would take a rerun's for repeats
        self.run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        self._stop = threading.Event()

    def _push(self, table: pa.Table) -> None:
        self.client.send_arrow(self.source, table, f"demo-{self.run_id}-{self.sent:06d}")
        self.sent += 1
        self.records += table.num_rows

    def push_history(self) -> None:
        """The pool's events as they are (their days in the past), batch by batch."""
        for offset in range(0, self.pool.num_rows, self.batch_rows):
            self._push(self.pool.slice(offset, self.batch_rows))

    def push_live(self) -> None:
        """``live_rows`` events of the pool again, stamped now (updates of pushed sorties)."""
        start = (self.sent * self.live_rows) % max(self.pool.num_rows - self.live_rows, 1)
        batch = self.pool.slice(start, self.live_rows)
        stamp = batch.schema.field("last_modified").type
        now = pa.scalar(dt.datetime.now(dt.UTC).replace(tzinfo=None), pa.timestamp("us"))
        column = batch.schema.get_field_index("last_modified")
        self._push(batch.set_column(column, "last_modified",
                                    pa.nulls(batch.num_rows, stamp).fill_null(now.cast(stamp))))

    def run(self, interval_s: float) -> threading.Thread:
        """The history now, then a live batch every ``interval_s``, until ``stop``."""

        def loop() -> None:
            try:
                self.push_history()
                while not self._stop.wait(interval_s):
                    self.push_live()
            except (PushRefused, TimeoutError) as exc:
                print(f"  demo push client stopped: {exc}", flush=True)

        thread = threading.Thread(target=loop, name="demo-pusher", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self.client.close()
