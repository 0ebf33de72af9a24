"""The auditing domain: what a reviewer says is really on an item's photos (its truth), the
verdict of each field read against that truth, and the shapes the review API speaks.

A review is ground truth: the metrics route, `scanbatch eval` and the dataset export all score
extractions against it with `scanbatch.evaluate`, so there is one definition of "correct"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StrictInt, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from scanbatch.evaluate import normalize
from scanbatch.images import THUMBNAIL_SIZES
from scanbatch.models import CamelModel, MatchedAlbum, PhotosPruned, Status
from scanbatch.names import FIELDS
from scanbatch.wholenumbers import MAX_ID, WholeNumber

MAX_VALUE_CHARS = 1000
MAX_NOTE_CHARS = 2000
MAX_PAGE = 100
MAX_SEARCH = 50


class Verdict(StrEnum):
    """How a field read compares with the truth."""

    CORRECT = "correct"  # read right (or rightly nothing: neither read nor on the photos)
    CORRECTED = "corrected"  # read, but wrong: the reviewer gave the right value
    MISSED = "missed"  # on the photos, nothing read
    SPURIOUS = "spurious"  # read, but the photos do not show it


class ReviewState(StrEnum):
    UNREVIEWED = "unreviewed"
    REVIEWED = "reviewed"
    ALL = "all"
    # Unreviewed, and some field's 99 % confidence threshold does not clear it
    # (scanbatch.estimates.threshold): what is left once the reader is trusted where it earns it.
    NEEDS_REVIEW = "needsReview"


class ReviewSort(StrEnum):
    CONFIDENCE = "confidence"  # lowest first: what most needs a human
    NEWEST = "newest"
    # A random order fixed for everyone (scan_results.audit_key): its first k are a random
    # sample, what estimates over every record rest on (scanbatch.estimates).
    AUDIT = "audit"


class GroupBy(StrEnum):
    NONE = "none"
    PROMPT_VERSION = "promptVersion"
    MODEL = "model"
    EXTRACTOR = "extractor"


class TruthFields(CamelModel):
    """The six fields as they really are; null: the photos don't show it. All six are
    required, so a reviewer cannot leave one out by accident."""

    artist_name: str | None = Field(max_length=MAX_VALUE_CHARS)
    album_title: str | None = Field(max_length=MAX_VALUE_CHARS)
    label_name: str | None = Field(max_length=MAX_VALUE_CHARS)
    catalog_number: str | None = Field(max_length=MAX_VALUE_CHARS)
    review_text: str | None = Field(max_length=MAX_VALUE_CHARS)
    upc: str | None = Field(max_length=MAX_VALUE_CHARS)

    @field_validator("*", mode="after")
    @classmethod
    def _blank_is_null(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    def by_field(self) -> dict[str, str | None]:
        return self.model_dump(by_alias=True)


class ReviewInput(CamelModel):
    """The body of `PUT .../items/<i>/review`."""

    fields: TruthFields
    matched_album_id: StrictInt | None = Field(ge=1, le=MAX_ID)
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class ReviewView(CamelModel):
    """A stored review, with the verdict of each field and of the match."""

    job_id: str
    item_index: int
    reviewer: str
    reviewed_at: datetime
    fields: dict[str, str | None]
    matched_album_id: int | None
    note: str | None
    verdicts: dict[str, Verdict]
    match_verdict: Verdict
    revision: int  # 1 for the first review of the item; earlier ones are kept as history
    version: str = Field(
        description="the item's ETag once this review is saved: send it as If-Match to save "
        "over exactly this review"
    )


def version_of(revision: int | None) -> str:
    """An item's ETag: its current review's revision, quoted (`"0"` before any review)."""
    return f'"{revision or 0}"'


class LeaseView(CamelModel):
    holder: str = Field(description="the user reviewing the record")
    until: datetime = Field(description="when the lease ends unless renewed")


class PhotoRef(CamelModel):
    index: int
    photo_type: str
    mime_type: str
    url: str


class ReviewItem(CamelModel):
    job_id: str
    item_index: int
    user_id: str
    created_at: datetime
    status: Status
    confidence: float | None  # the lowest field confidence; null when nothing was read
    extraction: dict[str, Any] | None
    matched_album_id: int | None
    matched_album: MatchedAlbum | None
    error_message: str | None
    extractor: str | None
    model: str | None
    prompt_version: str | None
    photos: list[PhotoRef]
    photos_pruned: PhotosPruned | None = Field(
        None,
        description="set when the photo retention removed the record's photos (then `photos` "
        "is empty): when and why; the reading stays and may still be reviewed",
    )
    review: ReviewView | None
    lease: LeaseView | None = Field(
        None, description="who is reviewing the record now (POST /library/scan/review/next)"
    )
    version: str = Field(
        description='the ETag of its review: `"0"` before any; send it with the save '
        '(If-None-Match: * for "0", else If-Match)'
    )


class ReviewPage(CamelModel):
    items: list[ReviewItem]
    total: int
    limit: int
    offset: int


def _value(extraction: dict[str, Any] | None, name: str) -> str | None:
    entry = (extraction or {}).get(name)
    if not isinstance(entry, dict):
        return None
    value = entry.get("value")
    return str(value) if value is not None and str(value).strip() else None


def verdict(field_name: str | None, read: Any, truth: Any) -> Verdict:
    """`field_name=None` compares album ids (the match); otherwise normalised field values."""
    if read is None and truth is None:
        return Verdict.CORRECT
    if truth is None:
        return Verdict.SPURIOUS
    if read is None:
        return Verdict.MISSED
    if field_name is None:
        same = read == truth
    else:
        same = normalize(field_name, str(read)) == normalize(field_name, str(truth))
    return Verdict.CORRECT if same else Verdict.CORRECTED


def field_verdicts(
    extraction: dict[str, Any] | None, truth: dict[str, str | None]
) -> dict[str, Verdict]:
    return {name: verdict(name, _value(extraction, name), truth.get(name)) for name in FIELDS}


class ReviewItemsQuery(CamelModel):
    """Query of `GET /library/scan/review/items`."""

    state: ReviewState = ReviewState.UNREVIEWED
    sort: ReviewSort = ReviewSort.CONFIDENCE
    job_id: UUID | None = Field(None, description="only this job's items")
    user_id: str | None = Field(None, description="only this user's uploads")
    limit: WholeNumber(1, MAX_PAGE) = 20
    offset: WholeNumber(0, MAX_ID) = 0


class NextQuery(CamelModel):
    """Body of `POST /library/scan/review/next` (optional): which queue to take from."""

    state: Literal[ReviewState.UNREVIEWED.value, ReviewState.NEEDS_REVIEW.value] = (
        ReviewState.UNREVIEWED.value
    )
    sort: ReviewSort = ReviewSort.CONFIDENCE
    job_id: UUID | None = Field(None, description="only this job's items")
    user_id: str | None = Field(None, description="only this user's uploads")


@dataclass(frozen=True)
class Scope:
    """Which finished records the metrics speak of: scanned in [since, until), and of one
    prompt version, model or extractor when given."""

    since: datetime | None = None
    until: datetime | None = None
    prompt_version: str | None = None
    model: str | None = None
    extractor: str | None = None


class MetricsQuery(CamelModel):
    group_by: GroupBy = GroupBy.NONE
    since: AwareDatetime | None = Field(None, description="only records scanned at or after this")
    until: AwareDatetime | None = Field(None, description="only records scanned before this")
    prompt_version: str | None = Field(None, max_length=200, description="only this prompt")
    model: str | None = Field(None, max_length=200, description="only this model")
    extractor: str | None = Field(None, max_length=200, description="only this extractor")

    @field_validator("until", mode="after")
    @classmethod
    def _range_forwards(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise PydanticCustomError(
                "worded", "must be later than since (the time range is [since, until)): swap them"
            )
        return until

    def scope(self) -> Scope:
        return Scope(self.since, self.until, self.prompt_version, self.model, self.extractor)


class DatasetQuery(CamelModel):
    since: AwareDatetime | None = Field(None, description="only reviews saved after this time")


class PhotoQuery(CamelModel):
    size: WholeNumber(
        16,
        4096,
        optional=True,
        description="a JPEG thumbnail: its longer side is the smallest of the fixed sizes "
        f"{', '.join(map(str, THUMBNAIL_SIZES))} that is at least this (the largest when "
        "none is)",
    ) = None


class CatalogQuery(CamelModel):
    q: str = Field(
        min_length=1, max_length=200, description="words of the artist and title, or an album id"
    )
    limit: WholeNumber(1, MAX_SEARCH) = 10


class AlbumList(CamelModel):
    albums: list[MatchedAlbum]


class ReviewHistory(CamelModel):
    reviews: list[ReviewView]


# --- the metrics body (GET /library/scan/review/metrics) --------------------------------------


class Bucket(CamelModel):
    """Reviewed values of one confidence range: how often right."""

    confidence_from: float
    confidence_to: float
    n: int
    correct: int
    accuracy: float | None
    mean_confidence: float | None


class AuditBucket(Bucket):
    """A confidence range of the audit sample, with the 95 % Wilson interval of its accuracy."""

    low: float | None
    high: float | None


class Estimate(CamelModel):
    """Accuracy over every finished record in scope, with its 95 % interval (the README's
    Audit estimates)."""

    accuracy: float
    low: float
    high: float
    method: Literal["audit-sample", "all-reviewed"]
    audit_reviews: int = Field(description="records in the audit sample it rests on")
    reviews_for_two_points: int = Field(
        description="more audit reviews that would bring the interval to ±2 points"
    )


class Range(CamelModel):
    expected: float
    low: float
    high: float


class Threshold(CamelModel):
    confidence: float | None = Field(
        description="above it the reader is right at least 99 % of the time (95 % sure); "
        "null: no such threshold yet"
    )
    no_review_needed: int = Field(description="unreviewed records at or above it")
    note: str | None


class EstimateFigures(CamelModel):
    reviewed_accuracy: float | None = Field(
        description="share of the reviewed records with it right (rightly empty counts)"
    )
    estimate: Estimate | None
    estimate_note: str | None = Field(description="why there is no estimate yet, and what to do")


class FieldFigures(EstimateFigures):
    """One field: the reviewed records' figures (as `scanbatch eval` gives them) and the
    estimates over every record."""

    n: int = Field(description="reviewed records whose truth has the field")
    exact: int
    accuracy: float | None
    similarity: float | None
    missing: int
    spurious: int
    calibration: list[Bucket]
    ece: float | None
    wrong_left: Range | None = Field(description="expected wrong values among the unreviewed")
    threshold: Threshold


class OverallFigures(EstimateFigures):
    n: int
    exact: int
    accuracy: float | None
    similarity: float | None
    missing: int
    spurious: int


class MatchFigures(EstimateFigures):
    # snake_case, as the route has always answered them
    in_catalog: int = Field(alias="in_catalog")
    in_catalog_correct: int = Field(alias="in_catalog_correct")
    wrong_album: int = Field(alias="wrong_album")
    not_matched: int = Field(alias="not_matched")
    not_in_catalog: int = Field(alias="not_in_catalog")
    not_in_catalog_correct: int = Field(alias="not_in_catalog_correct")
    false_match: int = Field(alias="false_match")
    accuracy: float | None
    precision: float | None
    recall: float | None


class Planning(CamelModel):
    unreviewed: int
    needs_review: int = Field(description="what state=needsReview lists")
    wrong_fields_left: Range | None
    reviews_for_two_points: int | None


class Week(CamelModel):
    week: str = Field(description="its Monday (UTC), ISO date")
    population: int
    reviewed: int
    audit_reviews: int
    overall: Estimate | None
    fields: dict[str, Estimate | None]
    match: Estimate | None


class Drift(CamelModel):
    overall: bool
    fields: dict[str, bool]
    match: bool


class MetricsGroup(CamelModel):
    group: str | None
    items: int = Field(description="reviewed records")
    results: int
    failed: int
    missing_results: int
    fields: dict[str, FieldFigures]
    overall: OverallFigures
    match: MatchFigures
    calibration: list[Bucket]
    ece: float | None
    population: int = Field(description="finished records in the group")
    reviewed: int
    audit_reviews: int
    planning: Planning
    audit_calibration: list[AuditBucket]
    weekly: list[Week]
    drift: Drift


class MetricsBody(CamelModel):
    group_by: GroupBy
    reviewed_items: int
    population: int
    groups: list[MetricsGroup]
