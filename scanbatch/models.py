"""Data shapes shared by the package: the manifest, extraction results and the API's views.
JSON is camelCase as in the station's contract; Python attributes are snake_case."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
    field_validator,
)
from pydantic.alias_generators import to_camel

from scanbatch.images import MAX_IMAGE_BYTES
from scanbatch.names import FIELDS, Role
from scanbatch.settings import MAX_KEEP_DAYS
from scanbatch.wholenumbers import MAX_ID, WholeNumber


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

    catalog_item_id: int | None = Field(default=None, strict=True, ge=0, le=MAX_ID)
    sticker_text: str | None = None
    detected_upc: str | None = Field(default=None, alias="detectedUPC")
    artist_name: str | None = None
    album_title: str | None = None


MAX_ITEMS = 10
MAX_IMAGES = 50
MAX_IMAGES_PER_ITEM = 5


class ManifestItem(CamelModel):
    image_count: int = Field(ge=1, le=MAX_IMAGES_PER_ITEM, strict=True)
    photo_types: list[Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]] = (
        Field(
            min_length=1,
            max_length=MAX_IMAGES_PER_ITEM,
            description="one per image: front, back, photo, front_cover, center_label, ...",
        )
    )
    context: ScanContext | None = None


class JobMode(StrEnum):
    """How a job's records are read: one request each as it runs (`interactive`), or in a
    provider's batch job at its price, within 24 h (`backlog`)."""

    INTERACTIVE = "interactive"
    BACKLOG = "backlog"


class _Items(CamelModel):
    """What both manifests are: a list of batch items (`ManifestItem`, one model for both)."""

    items: list[ManifestItem]

    @property
    def total_images(self) -> int:
        return sum(item.image_count for item in self.items)


class Manifest(_Items):
    """The multipart `manifest` field: `{"items": [...]}`, or the bare array the app sends;
    an object may also say the job's `mode` (as the form field `mode` does)."""

    items: list[ManifestItem] = Field(min_length=1, max_length=MAX_ITEMS)
    mode: JobMode | None = None


class DatasetManifest(_Items):
    """A dataset's `manifest.json` (a synthetic set, a golden-set export): the batch manifest's
    shape and items, without the station's limits on one HTTP batch (10 items, 50 images). A
    dataset is not a batch: `scanbatch run` sends one as several jobs of at most one batch each
    (`scanbatch.validation.batch_slices`)."""

    items: list[ManifestItem] = Field(min_length=1)


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
    # Answered through a batch API (the backlog), billed at its price.
    batch: bool = False
    cost: float | None = None  # from the price table, at the price it was billed at


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


# The API's `extraction`: kept a plain dict at run time (it is stored and passed on as JSON), but
# documented exactly: the six fields, each present only when read.
_EXTRACTION_JSON = {
    "type": "object",
    "propertyNames": {"enum": list(FIELDS)},
    "additionalProperties": ExtractionField.model_json_schema(),
    "description": "the fields read, each present only when read",
}
ExtractionJson = Annotated[dict[str, Any], WithJsonSchema(_EXTRACTION_JSON)]
OptionalExtractionJson = Annotated[
    dict[str, Any] | None, WithJsonSchema({"anyOf": [_EXTRACTION_JSON, {"type": "null"}]})
]


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


def library_code(letters: str | None, artist_number: int | None, number: int | None) -> str:
    """The station's shelf code: letters, artist number / album number (e.g. "BYR 3/12");
    "" for an album without one."""
    if not letters:
        return ""
    code = f"{letters} {artist_number}" if artist_number is not None else letters
    return f"{code}/{number}" if number is not None else code


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

    @property
    def library_code(self) -> str:
        return library_code(self.code_letters, self.code_artist_number, self.code_number)


class ResultView(CamelModel):
    item_index: int
    status: Status
    extraction: OptionalExtractionJson = None
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


class BacklogState(StrEnum):
    WAITING = "waiting"  # not yet packed into a Google batch
    SENDING = "sending"  # packed; being uploaded to Google
    SUBMITTED = "submitted"  # Google has it, not yet running
    RUNNING = "running"
    ANSWERED = "answered"  # every record's answer is in; the job's notebook reads them
    STOPPED = "stopped"  # the job ended (cancelled) before Google answered every record
    INTERACTIVE = "interactive"  # its extractor cannot batch: it runs as an interactive job


class BacklogView(CamelModel):
    """Where a backlog job stands at the provider."""

    state: BacklogState
    submitted_at: datetime | None = None  # when its latest Google batch was created
    batch: str | None = Field(None, description="the latest Google batch (batches/...)")
    note: str | None = None


class BacklogEvent(CamelModel):
    """One line of a backlog job's `backlog.jsonl`: its records `sent` in a Google batch, or
    one record `answered` (its response, or the error that ends it)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    event: Literal["sent", "answered", "again"]
    at: datetime
    batch: str  # our display name of the Google batch
    google_batch: str | None = None  # its name at Google, batches/...
    model: str | None = None
    items: list[int] | None = None  # sent
    item: int | None = None  # answered, again
    attempt: int | None = None
    response: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None


class JobView(JobSummary):
    results: list[ResultView]
    input_tokens: int | None = None
    output_tokens: int | None = None
    mode: JobMode = JobMode.INTERACTIVE
    backlog: BacklogView | None = None
    cost: float | None = Field(
        None,
        description="what its finished records cost, in the price table's currency, at the "
        "price they were billed at (a backlog job's: the Batch API's); null when unpriced",
    )


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


# -- shapes of the HTTP API that are not stored: OpenAPI components are generated from these --


class ErrorBody(BaseModel):
    """Every error: what is wrong and how to fix it."""

    model_config = ConfigDict(title="Error")

    status: int = Field(description="the HTTP status code")
    message: str = Field(description="what is wrong and how to fix it")


class Accepted(CamelModel):
    job_id: str = Field(json_schema_extra={"format": "uuid"})
    status: Status
    total_items: int


class JobListQuery(CamelModel):
    """Query of `GET /library/scan/batch`. `limit` is clamped (the station's contract), not
    refused; `offset` past the last job gives an empty page. Unknown parameters are ignored
    (clients add cache busters)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    limit: WholeNumber(0, MAX_ID, description="page size; clamped to 1..100") = 20
    offset: WholeNumber(0, MAX_ID) = 0


class ScanResponse(CamelModel):
    """`POST /library/scan`: one record, read and matched synchronously."""

    extraction: ExtractionJson
    matched_album_id: int | None = None
    matched_album: MatchedAlbum | None = None


class DeliveryState(StrEnum):
    """A completion webhook: `waiting` for its job to end, `due` (being tried, on the retry
    schedule), `delivered` (a 2xx) or `failed` (the retry window passed)."""

    WAITING = "waiting"
    DUE = "due"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookAttemptView(CamelModel):
    attempt: int = Field(description="1 for the first attempt")
    attempted_at: datetime
    status_code: int | None = Field(None, description="the receiver's HTTP status, if any")
    error: str | None = Field(None, description="why it did not count as delivered; null: a 2xx")
    duration_ms: float


class WebhookDeliveryView(CamelModel):
    id: str = Field(description="the webhook-id header: the same on every attempt")
    url: str = Field(description="the job's callbackUrl")
    state: DeliveryState
    event_type: str | None = Field(
        None, description="scan.job.completed or scan.job.failed, once the job has ended"
    )
    payload: dict[str, Any] | None = Field(
        None, description="the body sent (fixed when the job ends)"
    )
    created_at: datetime
    due_at: datetime | None = Field(None, description="when the job ended")
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = Field(None, description="when it was delivered or failed")
    last_error: str | None = None
    attempts: list[WebhookAttemptView]


class WebhookDeliveryList(CamelModel):
    deliveries: list[WebhookDeliveryView] = Field(
        description="empty for a job sent without callbackUrl"
    )


class Health(CamelModel):
    status: Literal["ok", "warming", "failing"] = Field(
        description="`ok`: a notebook kernel is warm, a job submitted now starts at once; "
        "`warming`: none is ready yet, a job waits a few seconds for one to start; `failing`: "
        "the latest kernel start failed (`problem` says why), jobs fail until one starts"
    )
    version: str
    extractor: str
    extractor_can_batch: bool = Field(
        False,
        description="whether the extractor sends backlog jobs through a batch API (at its "
        "price); false: a backlog job runs as an interactive one",
    )
    queued_jobs: int
    running_jobs: int
    warm_kernels: int = Field(description="notebook kernels started and waiting for a job")
    problem: str | None = Field(None, description="why the latest kernel start failed")
    disk_free_bytes: int | None = Field(
        None,
        description="free space on the disk of the data folder (writes answer 507 once it is "
        "full); a stationManager's `GET /admin/usage` says what takes the rest",
    )


class KeyCreate(CamelModel):
    """Body of `POST /admin/keys`."""

    user: str = Field(min_length=1, max_length=200, pattern=r"\S")
    # The values, not the members: a bad role is answered "Input should be 'dj', ..."
    role: Literal[Role.DJ.value, Role.MUSIC_DIRECTOR.value, Role.STATION_MANAGER.value]


class TicketCreate(CamelModel):
    """Body of `POST /library/scan/upload-tickets`: the one batch the ticket may send."""

    photos: int = Field(ge=1, le=MAX_IMAGES, strict=True, description="images the batch carries")
    bytes: int = Field(
        ge=1, le=MAX_IMAGES * MAX_IMAGE_BYTES, strict=True, description="the images' bytes, summed"
    )
    origin: str = Field(
        min_length=1, max_length=300, description="the page's origin (window.location.origin)"
    )


class UploadTicket(CamelModel):
    """An upload ticket: the page's browser sends one batch with it as its bearer token."""

    ticket: str
    expires_at: datetime
    photos: int
    bytes: int
    origin: str
    url: str = Field(description="where the browser POSTs the batch")


class KeyView(CamelModel):
    id: str
    user_id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyView):
    token: str = Field(description="shown once; only its hash is stored")


class KeyList(CamelModel):
    keys: list[KeyView]


class ScanForm(BaseModel):
    """The text fields of `POST /library/scan` (snake_case, as the station's backend reads
    them). Empty fields count as absent."""

    model_config = ConfigDict(extra="forbid")

    photo_types: list[Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]] = (
        Field(
            default_factory=list,
            max_length=MAX_IMAGES_PER_ITEM,
            description='one per image, as a JSON array string (["front", "back"]) or '
            "comma-separated (front,back); default: photo for each",
        )
    )
    catalog_item_id: WholeNumber(0, MAX_ID, optional=True) = None
    sticker_text: str | None = Field(None, max_length=10_000)
    detected_upc: str | None = Field(None, max_length=100)
    artist_name: str | None = Field(None, max_length=1000)
    album_title: str | None = Field(None, max_length=1000)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("photo_types", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except (ValueError, RecursionError):
                    raise ValueError(
                        'is not a valid JSON array: send ["front", "back"] or front,back'
                    ) from None
            return [part for part in text.split(",")]
        return value

    def context(self) -> ScanContext | None:
        fields = self.model_dump(exclude={"photo_types"}, exclude_none=True)
        return ScanContext(**fields) if fields else None


# -- retention and usage (scanbatch.retention, scanbatch.usage, /admin) -----------------------


class PhotosPruned(CamelModel):
    """Why a record has no photos: they were removed by the photo retention."""

    at: datetime = Field(description="when the photos were removed")
    why: str = Field(description="e.g. `older than 30 days, never reviewed`")


class PruneRequest(CamelModel):
    """Body of `POST /admin/prune`."""

    older_than_days: int = Field(
        ge=1,
        le=MAX_KEEP_DAYS,
        strict=True,
        description="remove the photos of finished, unreviewed records whose job finished "
        "more than this many days ago",
    )
    dry_run: bool = Field(
        False, strict=True, description="only count what would go; nothing is removed"
    )


class PruneSummary(CamelModel):
    """What a prune removed (or, with dryRun, would remove)."""

    older_than_days: int
    dry_run: bool
    cutoff: datetime = Field(description="records of jobs finished before this were eligible")
    records: int = Field(description="records whose photos went")
    photos: int
    thumbnails: int
    bytes: int = Field(description="bytes freed: the photos' and their thumbnails'")
    jobs: int = Field(description="jobs with at least one such record")


# Jobs by status, one count per status of the lifecycle.
JobCounts = create_model(  # type: ignore[call-overload]
    "JobCounts", __base__=CamelModel, **{status.value: (int, ...) for status in Status}
)
