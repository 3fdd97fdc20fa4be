"""Overlap the steps of a partition on several cores: fetch ahead and write behind.

The heavy work of every step (connector downloads and Arrow decoding, DuckDB, polars,
Parquet encoding) runs in native code that releases the GIL, so three threads (extract and
validate | build items | write) let the steps of consecutive batches proceed at the same time.
Queues hold at most ``depth`` items, so memory stays bounded by the batch size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 1, name: str = "prefetch") -> Iterator[T]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead of the consumer.

    Exceptions of the producer are re-raised in the consumer; when the consumer stops early
    the producer is told to stop at its next item.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:
            put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            value = buffer.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.exc
            yield value
    finally:
        stop.set()
        thread.join(timeout=30)


class WriteBehind(Generic[T]):
    """Hand items to ``consume`` in a background thread; ``close`` waits and re-raises."""

    def __init__(self, consume: Callable[[T], None], depth: int = 1, name: str = "writer"):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:
                    self._error = exc

    def put(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        """Wait until every item is consumed; raise the first consumer error."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
