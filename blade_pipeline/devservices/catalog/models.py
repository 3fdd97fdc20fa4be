"""Request and response bodies of the catalog API (they define its OpenAPI spec)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from blade_pipeline.devservices.catalog.store import StoredItem
from blade_pipeline.devservices.catalog.validation import MAX_ID_LENGTH

DATA_SOURCE_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
MAX_LOOKUP_IDS = 100_000
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable error code, e.g. invalid_request")
    reason: str = Field(description="what was wrong, naming the field when there is one")
    field: str | None = Field(default=None, description="the offending field, if any")


class ItemUploadResult(BaseModel):
    item_id: str
    status: Literal["created", "updated", "unchanged", "stale"] = Field(
        description="stale: left as stored, the stored item is newer (only with keepNewer)")
    version: int
    content_hash: str


class RejectedLine(BaseModel):
    line: int = Field(description="1-based line number in the NDJSON file")
    item_id: str | None
    reason: str


class BatchUploadResult(BaseModel):
    received: int = Field(description="non-blank lines in the file")
    created: int
    updated: int
    unchanged: int
    stale: int = Field(default=0, description="left as stored: the stored item is newer "
                                              "(only with keepNewer)")
    rejected: list[RejectedLine]


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_ids: list[ItemId] = Field(max_length=MAX_LOOKUP_IDS)
    include: list[Literal["last_modified"]] = Field(
        default=[], description="extra per-item fields to return (``last_modified``)")


class LookupResult(BaseModel):
    items: dict[str, str] = Field(description="item_id -> content_hash, known ids only")
    last_modified: dict[str, str | None] | None = Field(
        default=None, description="item_id -> the stored item's last_modified (ISO-8601), "
                                  "when asked for with include=[\"last_modified\"]")


class CatalogItem(BaseModel):
    item_id: str
    dataSource: str
    data_type: str | None
    classification: str | None
    content_hash: str
    version: int
    last_modified: str | None
    created_at: str
    updated_at: str
    item: dict[str, Any] = Field(description="the item object as last uploaded")

    @classmethod
    def from_stored(cls, row: StoredItem) -> CatalogItem:
        return cls(item_id=row.item_id, dataSource=row.data_source, data_type=row.data_type,
                   classification=row.classification, content_hash=row.content_hash,
                   version=row.version, last_modified=row.last_modified,
                   created_at=row.created_at, updated_at=row.updated_at,
                   item=json.loads(row.item))


class ItemPage(BaseModel):
    items: list[CatalogItem]
    next: str | None = Field(description="pass as `after` for the next page; null at the end")


class Stats(BaseModel):
    total: int
    data_sources: dict[str, int]


class Health(BaseModel):
    status: Literal["ok"]
