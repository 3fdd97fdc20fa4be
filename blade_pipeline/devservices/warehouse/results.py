"""Page a DuckDB Arrow result into what FetchResults answers: inline batches or cloud-fetch files.

The reader is consumed lazily, one page at a time, with one batch of read-ahead so that
``hasMoreRows`` is exact. Only the current and the previous page's files are kept in memory.
A row limit cuts the result; with ``lz4`` inline batches and files are LZ4 frames (fast level),
as a warehouse sends them to a client that can decompress them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import lz4.frame
import pyarrow as pa

from blade_pipeline.devservices.warehouse.arrow_types import client_schema, ipc_stream, to_client

#: Results at most this large are sent inline with the ExecuteStatement answer.
INLINE_MAX_ROWS = 20_000
INLINE_MAX_BYTES = 2 * 1024 * 1024
#: Size of one cloud-fetch file, and how many files one FetchResults answer lists at most.
FILE_TARGET_BYTES = 16 * 1024 * 1024
MAX_FILES_PER_PAGE = 8
LINK_TTL_SECONDS = 900


@dataclass
class ResultFile:
    """One cloud-fetch file: an Arrow IPC stream (LZ4-framed when compressed) served over http."""

    key: str
    start_row: int
    row_count: int
    data: pa.Buffer
    page: int
    expires_at: float = field(default_factory=lambda: time.time() + LINK_TTL_SECONDS)


def lz4_frame(data: pa.Buffer | bytes) -> bytes:
    """One LZ4 frame at the fast level (level 0), with the content size in its header."""
    return lz4.frame.compress(data, compression_level=lz4.frame.COMPRESSIONLEVEL_MIN)


class ResultStream:
    """Pages over an Arrow RecordBatchReader (client-readable types), at most ``row_limit``
    rows of it; ``lz4``: what it hands out is LZ4-compressed."""

    def __init__(self, reader: pa.RecordBatchReader, row_limit: int | None = None,
                 lz4: bool = False):
        self.schema = client_schema(reader.schema)
        self.lz4 = lz4
        self._reader = reader
        self._rows_left = row_limit if row_limit and row_limit > 0 else 2**62
        self._ahead: deque[pa.RecordBatch] = deque()
        self._done = False
        self.offset = 0  # rows handed out so far
        self.page = 0
        self.files: dict[str, ResultFile] = {}
        self.lock = threading.Lock()

    def _read(self) -> pa.RecordBatch | None:
        """The reader's next non-empty batch within the row limit (client types); None once the
        reader is exhausted or the limit reached (the reader is then closed)."""
        while not self._done:
            try:
                batch = self._reader.read_next_batch() if self._rows_left > 0 else None
            except StopIteration:
                batch = None
            if batch is None:
                self._done = True
                self._reader.close()
                return None
            if batch.num_rows:
                if batch.num_rows > self._rows_left:
                    batch = batch.slice(0, self._rows_left)
                self._rows_left -= batch.num_rows
                return to_client(batch, self.schema)
        return None

    def _fill(self) -> bool:
        """Make sure one non-empty batch is read ahead; False when the reader is exhausted."""
        if not self._ahead:
            batch = self._read()
            if batch is not None:
                self._ahead.append(batch)
        return bool(self._ahead)

    @property
    def has_more(self) -> bool:
        return self._fill()

    def take(self, max_rows: int, max_bytes: int) -> list[pa.RecordBatch]:
        """Next batches totalling at most ``max_rows`` rows (and about ``max_bytes``)."""
        out: list[pa.RecordBatch] = []
        rows = size = 0
        while rows < max_rows and size < max_bytes and self._fill():
            batch = self._ahead.popleft()
            room = max_rows - rows
            if batch.num_rows > room:
                self._ahead.appendleft(batch.slice(room))
                batch = batch.slice(0, room)
            out.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
        self.offset += rows
        return out

    def take_inline(self, max_rows: int, max_bytes: int) -> list[tuple[bytes, int]]:
        """Next batches as the IPC messages of an inline answer (compressed if ``lz4``), each
        with its row count."""
        out = []
        for batch in self.take(max_rows, max_bytes):
            data = batch.serialize()
            out.append((lz4_frame(data) if self.lz4 else data.to_pybytes(), batch.num_rows))
        return out

    def peek_small(self, max_rows: int, max_bytes: int) -> bool:
        """True when the whole remaining result fits in ``max_rows``/``max_bytes``."""
        rows = sum(b.num_rows for b in self._ahead)
        size = sum(b.nbytes for b in self._ahead)
        while rows <= max_rows and size <= max_bytes:
            batch = self._read()
            if batch is None:
                return True
            self._ahead.append(batch)
            rows, size = rows + batch.num_rows, size + batch.nbytes
        return False

    def next_files(self, max_bytes: int, max_files: int = MAX_FILES_PER_PAGE
                   ) -> list[ResultFile]:
        """Cut the next page of at most ``max_files`` cloud-fetch files (about ``max_bytes``);
        drop the files of pages before the previous one."""
        self.page += 1
        for key in [k for k, f in self.files.items() if f.page < self.page - 1]:
            del self.files[key]
        page_budget = max(max_bytes, FILE_TARGET_BYTES)
        made: list[ResultFile] = []
        spent = 0
        while len(made) < max_files and spent < page_budget and self._fill():
            start = self.offset
            batches = self.take(max_rows=2**62, max_bytes=FILE_TARGET_BYTES)
            data = ipc_stream(self.schema, batches)
            if self.lz4:
                data = pa.py_buffer(lz4_frame(data))
            rf = ResultFile(secrets.token_urlsafe(16), start, self.offset - start, data, self.page)
            self.files[rf.key] = rf
            made.append(rf)
            spent += data.size
        return made

    def close(self) -> None:
        """Drop the files and read-ahead and close the reader (waits for a page being cut)."""
        with self.lock:
            self.files.clear()
            self._ahead.clear()
            if not self._done:
                self._done = True
                self._reader.close()
