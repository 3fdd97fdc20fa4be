"""The drain: a push source's logged batches -> Parquet files per day in the lake, exactly once.

A durable JetStream consumer per push source (``drain_<source>``, explicit acks) delivers the
source's batches in log order. Each batch's rows are split by the day of the watermark column
and written to ``pushed/<source>/date=<day>/<sequence>.parquet`` (atomically; the file name is
the batch's log sequence, so writing a batch again writes the same files). Only then is a
commit recorded (``pushed/<source>/_committed.json``: the commit's number on each day it wrote)
and the messages acked. A drain killed between the files and the ack gets those batches again
after the consumer's ack wait, behind newer ones, and rewrites the same files: nothing is lost
or doubled, and their days are marked by the commit that rewrote them. The tenant of each
batch is kept as the ``_tenant`` column of its rows.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import nats
import pyarrow as pa
import pyarrow.compute as pc
from nats.js import api as js_api
from nats.js import errors as js_errors

from blade_pipeline.config.sources import BladeSource
from blade_pipeline.push.records import from_log_payload
from blade_pipeline.sources.pushed_rows import PUSHED, TENANT_COLUMN, PushedRows
from blade_pipeline.storage.lake import ParquetLake

LOG = logging.getLogger("blade.drain")


def pushed_dir(lake: ParquetLake, source: str, *parts: str) -> str:
    return lake.path(PUSHED, source, *parts)


def committed_sequence(lake: ParquetLake, source: str) -> int:
    """The newest log sequence of ``source`` whose rows are in the lake (0: none yet)."""
    return PushedRows(lake=lake).committed(source).sequence


@dataclass
class Drained:
    """What one pass of the drain moved for a source."""

    batches: int = 0
    records: int = 0
    days: set[str] = field(default_factory=set)
    committed: int = 0  # the newest log sequence drained, after the pass


def write_batch(lake: ParquetLake, source: BladeSource, sequence: int, tenant: str,
                table: pa.Table) -> set[str]:
    """One logged batch's rows as a file per day of its watermark; the days written."""
    table = table.append_column(TENANT_COLUMN,
                                pa.nulls(table.num_rows, pa.string()).fill_null(tenant))
    days = pc.cast(table.column(source.watermark_column), pa.date32())
    written = set()
    if days.null_count:  # the ingest API refuses such batches
        raise ValueError(f"[{source.name}] batch {sequence}: rows without a "
                         f"{source.watermark_column}")
    for day in pc.unique(days).to_pylist():
        rows = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        name = day.isoformat()
        lake.write_parquet(pushed_dir(lake, source.name, f"date={name}"), rows.schema, [rows],
                           name=f"{sequence:020d}.parquet")
        written.add(name)
    return written


class Drain:
    """Moves the logged batches of push sources into the lake."""

    def __init__(self, url: str, stream: str, lake: ParquetLake, sources: list[BladeSource],
                 ack_wait_seconds: float = 60.0) -> None:
        self._url, self._stream, self._lake = url, stream, lake
        self._pushed = PushedRows(lake=lake)
        self._ack_wait = ack_wait_seconds  # a dead drain's batches are redelivered after it
        self._sources = [s for s in sources if s.kind == "push"]
        self._nc: nats.aio.client.Client | None = None
        self._subs: dict[str, object] = {}

    async def connect(self) -> None:
        self._nc = await nats.connect(self._url, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.5, connect_timeout=5)
        js = self._nc.jetstream()
        for source in self._sources:
            self._subs[source.name] = await js.pull_subscribe(
                f"{self._stream}.*.{source.name}", durable=f"drain_{source.name}",
                stream=self._stream,
                config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT,
                                             ack_wait=self._ack_wait,
                                             max_ack_pending=10_000))

    async def drain_once(self, source: BladeSource, max_batches: int = 64,
                         wait_seconds: float = 1.0) -> Drained:
        """Move up to ``max_batches`` logged batches of ``source`` into the lake."""
        committed = await asyncio.to_thread(self._pushed.committed, source.name)
        result = Drained(committed=committed.sequence)
        try:
            messages = await self._subs[source.name].fetch(max_batches, timeout=wait_seconds)
        except (TimeoutError, js_errors.FetchTimeoutError):
            return result
        newest = result.committed
        for message in messages:
            sequence = message.metadata.sequence.stream
            tenant = (message.headers or {}).get("Blade-Tenant", "")
            table = from_log_payload(message.data)
            result.days |= await asyncio.to_thread(write_batch, self._lake, source, sequence,
                                                   tenant, table)
            result.batches += 1
            result.records += table.num_rows
            newest = max(newest, sequence)
        if result.batches:  # the files are durable: commit, then ack
            committed.commit += 1
            committed.days.update(dict.fromkeys(result.days, committed.commit))
            committed.sequence = result.committed = newest
            await asyncio.to_thread(self._pushed.commit, source.name, committed)
        for message in messages:
            await message.ack()
        if result.batches:
            LOG.info("[%s] drained %d batches (%d records) into %d days, committed sequence %d",
                     source.name, result.batches, result.records, len(result.days), newest)
        return result

    async def pending(self, source: BladeSource) -> int:
        """Batches of ``source`` in the log not drained yet (the drain's lag)."""
        return lag_of(await self._subs[source.name].consumer_info())

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None


def lag_of(info: js_api.ConsumerInfo) -> int:
    """A drain consumer's lag: batches not delivered yet plus delivered and not acked."""
    return info.num_pending + info.num_ack_pending


def drain_lag(url: str, stream: str, source: str, timeout: float = 2.0) -> int | None:
    """Batches of ``source`` in the log not drained yet (its drain consumer's pending and
    unacked messages), asked from outside the server; None when the log does not answer or
    no drain has started on the stream yet."""

    async def ask() -> int | None:
        async def quiet(_error: Exception) -> None:  # (no traceback per failed attempt)
            return None

        try:
            nc = await asyncio.wait_for(nats.connect(
                url, connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=1,
                error_cb=quiet), timeout)
        except Exception:  # (nats-py raises several kinds for an unreachable server)
            return None
        try:
            return lag_of(await nc.jetstream(timeout=timeout).consumer_info(
                stream, f"drain_{source}"))
        except (js_errors.Error, nats.errors.Error, TimeoutError):
            return None
        finally:
            await nc.close()

    with ThreadPoolExecutor(1) as pool:  # (a sensor's thread may already run an event loop)
        return pool.submit(asyncio.run, ask()).result()
