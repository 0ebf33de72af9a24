"""Data shapes shared by the package: the manifest, extraction results and the API's views.
JSON is camelCase as in the station's contract; Python attributes are snake_case."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Status(StrEnum):
    """Lifecycle of jobs and results: pending → processing → completed | failed."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED)


class ScanContext(CamelModel):
    """What the app already knows about a record (all optional)."""

    catalog_item_id: int | None = None
    sticker_text: str | None = None
    detected_upc: str | None = Field(default=None, alias="detectedUPC")
    artist_name: str | None = None
    album_title: str | None = None


class ManifestItem(CamelModel):
    image_count: int
    photo_types: list[str]
    context: ScanContext | None = None


class Manifest(CamelModel):
    items: list[ManifestItem]

    @property
    def total_images(self) -> int:
        return sum(item.image_count for item in self.items)


class ExtractionField(BaseModel):
    value: str
    confidence: float = Field(ge=0.0, le=1.0)


class Usage(BaseModel):
    """Accounting for one extraction call, recorded per result row (never sent in `extraction`)."""

    extractor: str
    model: str | None = None
    prompt_version: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    retries: int = 0
    raw_response: str | None = None


class Extraction(CamelModel):
    """The six fields, each present only when read."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    artist_name: ExtractionField | None = None
    album_title: ExtractionField | None = None
    label_name: ExtractionField | None = None
    catalog_number: ExtractionField | None = None
    review_text: ExtractionField | None = None
    upc: ExtractionField | None = None
    usage: Usage | None = Field(default=None, exclude=True)

    def fields_json(self) -> dict[str, Any]:
        """The API's `extraction` object: only the fields that were read."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"usage"})

    def value(self, name: str) -> str | None:
        f = getattr(self, name)
        return f.value if f is not None else None


@dataclass(frozen=True)
class Photo:
    """One photo of an item, as the extractor sees it."""

    data: bytes = field(repr=False)
    mime_type: str
    photo_type: str


@dataclass(frozen=True)
class CatalogMatch:
    album_id: int | None  # None: no album, only a note (e.g. an unknown catalogItemId)
    score: float
    method: str  # "catalogItemId", "context", "extraction"
    note: str | None = None  # e.g. an unknown catalogItemId that was reported, not trusted


class MatchedAlbum(CamelModel):
    id: int
    artist_name: str
    album_title: str
    code_letters: str | None = None
    code_artist_number: int | None = None
    code_number: int | None = None
    genre_name: str | None = None
    format_name: str | None = None
    label: str | None = None


class ResultView(CamelModel):
    item_index: int
    status: Status
    extraction: dict[str, Any] | None = None
    matched_album_id: int | None = None
    matched_album: MatchedAlbum | None = None
    match_score: float | None = None
    match_note: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    retryable: bool | None = None


class JobSummary(CamelModel):
    job_id: str
    status: Status
    total_items: int
    completed_items: int
    failed_items: int
    created_at: datetime
    updated_at: datetime


class JobView(JobSummary):
    results: list[ResultView]
    input_tokens: int | None = None
    output_tokens: int | None = None


class JobList(CamelModel):
    jobs: list[JobSummary]
    total: int
    limit: int
    offset: int


class ItemOutcome(CamelModel):
    """One finished item: the line the processing kernel appends to `results.jsonl` and the
    server ingests into `scan_results`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    item_index: int
    status: Status
    extraction: dict[str, Any] | None = None
    matched_album_id: int | None = None
    match_score: float | None = None
    match_method: str | None = None
    match_note: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    retryable: bool | None = None
    usage: Usage | None = None
    finished_at: datetime
