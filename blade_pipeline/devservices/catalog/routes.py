"""HTTP endpoints of the catalog service."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Query, Response, Security, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer

from blade_pipeline.devservices.catalog.errors import ApiError
from blade_pipeline.devservices.catalog.models import (
    DATA_SOURCE_PATTERN,
    BatchUploadResult,
    CatalogItem,
    ErrorBody,
    Health,
    ItemPage,
    ItemUploadResult,
    LookupRequest,
    LookupResult,
    RejectedLine,
    Stats,
)
from blade_pipeline.devservices.catalog.ndjson import parse_ndjson
from blade_pipeline.devservices.catalog.store import CatalogStore
from blade_pipeline.devservices.catalog.validation import (
    MAX_ID_LENGTH,
    MAX_SHORT_TEXT,
    ItemError,
    ItemRecord,
    expected_data_type,
    loads_strict,
    validate_item,
)

# Auth is enforced by BearerAuthMiddleware; this only declares it in the OpenAPI spec.
_bearer = HTTPBearer(auto_error=False, description="the catalog token")
_AUTH = {401: {"model": ErrorBody, "description": "no bearer token"},
         403: {"model": ErrorBody, "description": "wrong bearer token"}}
_UPLOAD = {**_AUTH,
           400: {"model": ErrorBody, "description": "not multipart, or malformed JSON"},
           413: {"model": ErrorBody, "description": "body over the size limit"},
           422: {"model": ErrorBody, "description": "a field is missing or has the wrong type"}}

DataSource = Annotated[str, Form(alias="dataSource", min_length=1, max_length=MAX_SHORT_TEXT,
                                 pattern=DATA_SOURCE_PATTERN,
                                 description="catalog data source, e.g. BLADE:maintenance")]
_ETAG_SAFE = "".join(chr(c) for c in range(0x21, 0x7f) if chr(c) not in '"%')
ItemIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


def etag(content_hash: str) -> str:
    """The ETag of an item: its content hash, quoted; characters an ETag cannot hold (the
    hash is opaque client text: quotes, controls, non-ASCII) are percent-encoded."""
    return f'"{quote(content_hash, safe=_ETAG_SAFE)}"'


def _decode_json(raw: bytes | str, field: str) -> Any:
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff") if isinstance(raw, bytes) else raw
        return loads_strict(text)
    except UnicodeDecodeError:
        raise ApiError(400, f"{field}: not UTF-8 text", field) from None
    except ValueError as exc:
        raise ApiError(400, f"{field}: invalid JSON: {exc}", field) from None


def _single_item(raw: bytes, data_source: str, classification: str | None,
                 metadata: str | None, timestamp: str | None) -> ItemRecord:
    """Merge the form parts into the uploaded item object; validate it."""
    item = _decode_json(raw, "file")
    if type(item) is not dict:
        raise ApiError(422, "file: must hold a JSON object (the BLADE item)", "file")
    if metadata is not None:
        extra = _decode_json(metadata, "metadata")
        if type(extra) is not dict:
            raise ApiError(422, "metadata: must be a JSON object", "metadata")
        base = item.get("metadata")
        if base is None or type(base) is dict:  # else validation reports the file's metadata
            item["metadata"] = {**(base or {}), **extra}
    if timestamp is not None:
        try:
            datetime.fromisoformat(timestamp)
        except ValueError:
            raise ApiError(422, f"timestamp: not an ISO-8601 timestamp: {timestamp[:40]!r}",
                           "timestamp") from None
        item["timestamp"] = timestamp
    if classification is not None:
        item["classification"] = classification
    doc = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    try:
        return validate_item(item, doc, expected_data_type(data_source))
    except ItemError as exc:
        raise ApiError(422, f"file.{exc.field}: {exc.reason}", f"file.{exc.field}") from None


def build_router(store: CatalogStore, refuse: re.Pattern[str] | None = None) -> APIRouter:
    api = APIRouter(prefix="/api/v1", dependencies=[Security(_bearer)], responses=_AUTH)

    @api.post("/items", status_code=201, response_model=ItemUploadResult,
              responses={**_UPLOAD, 200: {"model": ItemUploadResult,
                                          "description": "unchanged or updated"}},
              summary="Upload one item (multipart, as the seed flow does)")
    async def upload_item(
        response: Response,
        file: Annotated[UploadFile, File(description="blade_item.json: the BLADE item")],
        data_source: DataSource,
        classification: Annotated[str | None, Form(max_length=MAX_SHORT_TEXT)] = None,
        metadata: Annotated[str | None, Form(description="JSON object, merged into the "
                                                         "item's metadata")] = None,
        timestamp: Annotated[str | None, Form(max_length=64, description="ISO-8601")] = None,
        keep_newer: Annotated[bool, Form(
            alias="keepNewer", description="leave the item as stored if its last_modified is "
                                           "later than the upload's (status stale)")] = False,
    ) -> ItemUploadResult:
        raw = await file.read()
        record = _single_item(raw, data_source, classification, metadata, timestamp)
        [(status, version)] = await run_in_threadpool(store.upsert, data_source, [record],
                                                      keep_newer)
        if status != "created":
            response.status_code = 200
        return ItemUploadResult(item_id=record.item_id, status=status, version=version,
                                content_hash=record.content_hash)

    @api.post("/items/batch", response_model=BatchUploadResult, responses=_UPLOAD,
              summary="Upload an NDJSON file of items in one transaction")
    async def upload_batch(
        file: Annotated[UploadFile, File(description="NDJSON: one BLADE item object per line")],
        data_source: DataSource,
        keep_newer: Annotated[bool, Form(
            alias="keepNewer", description="leave items whose stored last_modified is later "
                                           "than the upload's (counted as stale)")] = False,
    ) -> BatchUploadResult:
        raw = await file.read()
        return await run_in_threadpool(_ingest_batch, store, data_source, raw, keep_newer,
                                       refuse)

    @api.post("/items/lookup", response_model=LookupResult,
              responses={**_AUTH, 400: {"model": ErrorBody, "description": "malformed JSON"},
                         413: {"model": ErrorBody, "description": "body over the size limit"},
                         422: {"model": ErrorBody, "description": "wrong or missing fields"}},
              summary="Current content_hash of each known item id")
    async def lookup(body: LookupRequest) -> LookupResult:
        if "last_modified" not in body.include:
            return LookupResult(items=await run_in_threadpool(store.lookup, body.item_ids))
        rows = await run_in_threadpool(store.lookup_with_last_modified, body.item_ids)
        return LookupResult(items={item_id: content_hash for item_id, content_hash, _ in rows},
                            last_modified={item_id: stamp for item_id, _, stamp in rows})

    @api.get("/items/{item_id}", response_model=CatalogItem,
             responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
    async def get_item(item_id: ItemIdPath, response: Response) -> CatalogItem:
        row = await run_in_threadpool(store.get, item_id)
        if row is None:
            raise ApiError(404, f"no item {item_id!r}", "item_id")
        response.headers["ETag"] = etag(row.content_hash)
        return CatalogItem.from_stored(row)

    @api.head("/items/{item_id}", responses={404: {"description": "no such item"}},
              summary="Whether an item exists (ETag = content hash, X-Item-Version)",
              description="The ETag holds the content hash, percent-encoding any character "
                          "outside visible ASCII, '\"' and '%'.")
    async def head_item(item_id: ItemIdPath) -> Response:
        row = await run_in_threadpool(store.get, item_id)
        if row is None:
            return Response(status_code=404)
        return Response(headers={"ETag": etag(row.content_hash),
                                 "X-Item-Version": str(row.version)})

    @api.get("/items", response_model=ItemPage, responses={422: {"model": ErrorBody}},
             summary="List items by id (cursor pagination)")
    async def list_items(
        data_source: Annotated[str | None, Query(alias="dataSource", max_length=MAX_SHORT_TEXT,
                                                 pattern=DATA_SOURCE_PATTERN)] = None,
        after: Annotated[str | None, Query(max_length=MAX_ID_LENGTH,
                                           description="last item_id of the previous page")]
        = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ItemPage:
        rows = await run_in_threadpool(store.list, data_source, after, limit)
        items = [CatalogItem.from_stored(r) for r in rows]
        return ItemPage(items=items, next=rows[-1].item_id if len(rows) == limit else None)

    @api.get("/stats", response_model=Stats, summary="Item counts per data source")
    async def stats() -> Stats:
        counts = await run_in_threadpool(store.stats)
        return Stats(total=sum(counts.values()), data_sources=counts)

    return api


def _ingest_batch(store: CatalogStore, data_source: str, raw: bytes,
                  keep_newer: bool = False, refuse: re.Pattern[str] | None = None
                  ) -> BatchUploadResult:
    records, rejected = parse_ndjson(raw, data_source, refuse)
    if not records and not rejected:
        raise ApiError(422, "file: contains no items", "file")
    counts = Counter(status for status, _ in store.upsert(data_source, records, keep_newer))
    return BatchUploadResult(
        received=len(records) + len(rejected), created=counts["created"],
        updated=counts["updated"], unchanged=counts["unchanged"], stale=counts["stale"],
        rejected=[RejectedLine(line=r.line, item_id=r.item_id, reason=r.reason)
                  for r in rejected],
    )


def build_health_router(store: CatalogStore) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Health, responses={503: {"model": ErrorBody}},
                summary="Liveness (no auth)")
    async def healthz() -> Health:
        try:
            await run_in_threadpool(store.ping)
        except Exception as exc:
            raise ApiError(503, f"store unavailable: {type(exc).__name__}") from exc
        return Health(status="ok")

    return router
