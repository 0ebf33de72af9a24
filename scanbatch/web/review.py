"""The auditing routes beside the station's contract: the review queue, photos and their
thumbnails, saving a review (ground truth), metrics, the golden-set export and a catalog search.

The queue, metrics and export are for the roles `musicDirector` and `stationManager` (every
user's items); `dj` gets 403. A photo may be read by the job's owner and by those roles."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request, send_file, url_for

from scanbatch import golden_set, metrics
from scanbatch.audit import (
    AlbumList,
    CatalogQuery,
    DatasetQuery,
    MetricsBody,
    MetricsQuery,
    NextQuery,
    PhotoQuery,
    ReviewHistory,
    ReviewInput,
    ReviewItem,
    ReviewItemsQuery,
    ReviewPage,
    ReviewState,
    ReviewView,
    version_of,
)
from scanbatch.errors import BadRequest, Forbidden, Gone, NotFound
from scanbatch.jobfolder import JobFolder, PhotoFile
from scanbatch.models import MAX_IMAGES_PER_ITEM, MAX_ITEMS, ErrorBody
from scanbatch.names import WRITE_ROLES, Role
from scanbatch.retention import gone_message
from scanbatch.store import ApiKey, parse_job_id
from scanbatch.store.reviews import ReviewStore
from scanbatch.thumbnails import cached_thumbnail
from scanbatch.web.auth import current_key
from scanbatch.web.errors import error_response
from scanbatch.web.forms import json_body, query_args
from scanbatch.web.openapi import JOB_ID, Reply, operation
from scanbatch.web.services import MAX_EXPORTS, services
from scanbatch.wholenumbers import MAX_ID, whole_number

bp = Blueprint("review", __name__, url_prefix="/library/scan")

PHOTO_MAX_AGE = 86400

NOT_REVIEWER = "Only musicDirector and stationManager may audit (dj may not)"
MAX_ITEM_INDEX = MAX_ITEMS - 1
MAX_PHOTO_INDEX = MAX_IMAGES_PER_ITEM - 1
ITEM = [
    JOB_ID,
    {
        "name": "itemIndex",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ITEM_INDEX},
    },
]
# The export is the one response that streams for long (every reviewed photo): at most
# MAX_EXPORTS at once (Services.export_slots), so clients that read exports slowly, or stop,
# hold at most 2 of the server's 8 threads (scanbatch.web.serve) and the others keep answering
# polls. A stalled one is reset after SCANBATCH_HTTP_SEND_TIMEOUT, which frees its slot.
EXPORT_RETRY_AFTER = 10  # seconds


def _reviews() -> ReviewStore:
    return services().store.reviews


def require_reviewer() -> ApiKey:
    key = current_key()
    if key.role not in WRITE_ROLES:
        raise Forbidden(
            f"Role '{key.role}' may not audit scans: the review routes need the "
            "musicDirector or stationManager role"
        )
    return key


def _folder(job_id: str) -> JobFolder:
    return JobFolder.for_job(services().settings.jobs_dir, job_id)


def _item_index(raw: str) -> int:
    return whole_number(raw, "itemIndex", 0, MAX_ITEM_INDEX)


def _photo_files(folder: JobFolder, item_index: int) -> list[PhotoFile]:
    return folder.photo_files(item_index) if folder.images_dir.is_dir() else []


def _photos(job_id: str, item_index: int, photo_types: list[str]) -> list[tuple[str, str]]:
    files = _photo_files(_folder(job_id), item_index)
    return [(ptype, f.mime_type) for ptype, f in zip(photo_types, files, strict=False)]


def _photo_url(job_id: str, item_index: int, n: int) -> str:
    return url_for("review.photo", job_id=job_id, item_index=item_index, n=n)


operation(
    "get",
    "/library/scan/review/items",
    "Every user's finished items to audit: lowest confidence first, newest first, or in the "
    "audit order (a random order, the same for everyone: its first k are a random sample)",
    query=ReviewItemsQuery,
    responses={
        200: ReviewPage,
        400: "A filter, limit or offset is out of range",
        403: NOT_REVIEWER,
    },
)


@bp.get("/review/items")
def review_items() -> Response:
    require_reviewer()
    q = query_args(ReviewItemsQuery)
    reviews = _reviews()
    page = reviews.items(
        state=q.state,
        sort=q.sort,
        job_id=str(q.job_id) if q.job_id else None,
        user_id=q.user_id or None,
        limit=q.limit,
        offset=q.offset,
        thresholds=metrics.thresholds(reviews) if q.state is ReviewState.NEEDS_REVIEW else None,
        photos=_photos,
        photo_url=_photo_url,
    )
    return jsonify(page.to_json_dict())


operation(
    "get",
    "/library/scan/batch/{jobId}/items/{itemIndex}/photos/{n}",
    "A photo's original bytes, or with ?size=N a JPEG thumbnail (made once, then kept)",
    parameters=[
        *ITEM,
        {
            "name": "n",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PHOTO_INDEX},
        },
    ],
    query=PhotoQuery,
    responses={
        200: Reply("The image", content={"image/*": {}}),
        400: "A malformed job id, index or size",
        404: "No such job (or not visible to the caller), item or photo",
        410: "The photo retention removed the record's photos: the message says when and why",
        422: "A thumbnail was asked of a photo with more pixels than thumbnails are made from",
    },
)


@bp.get("/batch/<job_id>/items/<item_index>/photos/<n>")
def photo(job_id: str, item_index: str, n: str) -> Response:
    key = current_key()
    job_id = parse_job_id(job_id)
    index = _item_index(item_index)
    position = whole_number(n, "n (the photo's index)", 0, MAX_PHOTO_INDEX)
    size = query_args(PhotoQuery).size
    owner = None if key.role in WRITE_ROLES else key.user_id
    view = services().store.get_job(job_id, owner)  # 404 for another user's job
    if index >= view.total_items:
        raise NotFound(f"Job has no item {index}: its items are 0..{view.total_items - 1}")
    pruned = services().store.retention.pruned(job_id, index)
    if pruned is not None:
        raise Gone(gone_message(pruned.at, pruned.why))
    folder = _folder(job_id)
    files = _photo_files(folder, index)
    if position >= len(files):
        raise NotFound(
            f"Item {index} has {len(files)} photo(s): use an index from 0 to {len(files) - 1}"
        )
    photo = files[position]
    if size is not None:
        target = cached_thumbnail(photo.path, size, folder)
        return _private(send_file(target, mimetype="image/jpeg"))
    return _private(send_file(photo.path, mimetype=photo.mime_type))


def _private(response: Response) -> Response:
    """A job's photos are its owner's and the auditors': a browser may keep them (they never
    change under one URL), a shared cache (a proxy, a CDN) must not."""
    response.cache_control.public = False
    response.cache_control.private = True
    response.cache_control.no_cache = None  # send_file's default: it would ask every time
    response.cache_control.max_age = PHOTO_MAX_AGE
    return response


ITEM_ERRORS = {
    400: "A malformed job id or index",
    403: NOT_REVIEWER,
    404: "No such job or item",
}
VERSIONED = {"ETag": {"schema": {"type": "string"}, "description": "the item's version"}}
HELD = "Someone else holds the record's lease (the message names them), or it is still being read"

operation(
    "put",
    "/library/scan/batch/{jobId}/items/{itemIndex}/review",
    "Save the item's truth; the review it replaces is kept as history. Send the version you "
    "edited: If-Match: <version>, or If-None-Match: * for a record never reviewed",
    parameters=[
        *ITEM,
        {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
        {"name": "If-None-Match", "in": "header", "schema": {"type": "string", "enum": ["*"]}},
    ],
    json_body=ReviewInput,
    responses={
        200: Reply("The review saved", ReviewView, headers=VERSIONED),
        400: "A bad body or If-None-Match: the message names the field and the fix",
        403: NOT_REVIEWER,
        404: "No such job or item",
        409: HELD,
        412: "Someone saved since the version sent (the message names who and when)",
    },
)


@bp.put("/batch/<job_id>/items/<item_index>/review")
def save_review(job_id: str, item_index: str) -> Response:
    key = require_reviewer()
    job_id = parse_job_id(job_id)
    index = _item_index(item_index)
    review = json_body(ReviewInput)
    if_match = _etags("If-Match")
    if_none_match = _etags("If-None-Match")
    if if_none_match is not None and if_none_match != ["*"]:
        raise BadRequest(
            "If-None-Match takes only *, for a record never reviewed: send If-Match with the "
            "version you edited instead"
        )
    saved = _reviews().save(
        job_id, index, key.user_id, review, if_match=if_match, if_none_match=bool(if_none_match)
    )
    return _versioned(jsonify(saved.to_json_dict()), saved.version)


def _etags(header: str) -> list[str] | None:
    raw = request.headers.get(header)
    if raw is None:
        return None
    return [t.strip().removeprefix("W/") for t in raw.split(",") if t.strip()]


def _versioned(response: Response, version: str) -> Response:
    response.headers["ETag"] = version
    return response


def _lease_seconds() -> float:
    return services().settings.review_lease_seconds


def _item_reply(item: ReviewItem) -> Response:
    return _versioned(jsonify(item.to_json_dict()), item.version)


operation(
    "post",
    "/library/scan/review/next",
    "The next record to review, leased to the caller for SCANBATCH_REVIEW_LEASE_SECONDS: "
    "their own unexpired lease first, else the queue's first record nobody holds",
    json_body=NextQuery,
    body_required=False,
    responses={
        200: Reply("The record, leased to the caller", ReviewItem, headers=VERSIONED),
        204: Reply("Nothing is left to review (others may hold the last records)"),
        400: "A bad sort, state, jobId or userId",
        403: NOT_REVIEWER,
    },
)


@bp.post("/review/next")
def next_review() -> Response:
    key = require_reviewer()
    # The body is optional: a POST with none (and no JSON type) takes the queue's defaults.
    q = json_body(NextQuery) if request.is_json or request.content_length else NextQuery()
    reviews = _reviews()
    state = ReviewState(q.state)
    item = reviews.next(
        key.user_id,
        _lease_seconds(),
        state=state,
        sort=q.sort,
        job_id=str(q.job_id) if q.job_id else None,
        user_id=q.user_id or None,
        thresholds=metrics.thresholds(reviews) if state is ReviewState.NEEDS_REVIEW else None,
        photos=_photos,
        photo_url=_photo_url,
    )
    return Response(status=204) if item is None else _item_reply(item)


operation(
    "post",
    "/library/scan/batch/{jobId}/items/{itemIndex}/lease",
    "Lease one record (picked from the queue) to the caller",
    parameters=ITEM,
    responses={
        200: Reply("The record, leased to the caller", ReviewItem, headers=VERSIONED),
        **ITEM_ERRORS,
        409: HELD,
    },
)


@bp.post("/batch/<job_id>/items/<item_index>/lease")
def take_lease(job_id: str, item_index: str) -> Response:
    key = require_reviewer()
    item = _reviews().lease(
        parse_job_id(job_id),
        _item_index(item_index),
        key.user_id,
        _lease_seconds(),
        photos=_photos,
        photo_url=_photo_url,
    )
    return _item_reply(item)


operation(
    "delete",
    "/library/scan/batch/{jobId}/items/{itemIndex}/lease",
    "Release the caller's lease on a record (a stationManager may release anyone's)",
    parameters=ITEM,
    responses={
        204: Reply("Released (or nobody held it)"),
        **ITEM_ERRORS,
        409: "Someone else holds the lease (the message names them)",
    },
)


@bp.delete("/batch/<job_id>/items/<item_index>/lease")
def release_lease(job_id: str, item_index: str) -> Response:
    key = require_reviewer()
    holder = None if key.role == Role.STATION_MANAGER else key.user_id
    _reviews().release(parse_job_id(job_id), _item_index(item_index), holder)
    return Response(status=204)


operation(
    "get",
    "/library/scan/batch/{jobId}/items/{itemIndex}/reviews",
    "Every review of the item, oldest first",
    parameters=ITEM,
    responses={
        200: Reply("Every review, oldest first", ReviewHistory, headers=VERSIONED),
        400: "A malformed job id or index",
        403: NOT_REVIEWER,
    },
)


@bp.get("/batch/<job_id>/items/<item_index>/reviews")
def review_history(job_id: str, item_index: str) -> Response:
    require_reviewer()
    index = _item_index(item_index)
    history = ReviewHistory(reviews=_reviews().history(parse_job_id(job_id), index))
    version = history.reviews[-1].version if history.reviews else version_of(0)
    return _versioned(jsonify(history.to_json_dict()), version)


operation(
    "get",
    "/library/scan/review/metrics",
    "Per group: accuracy, similarity, calibration and match precision/recall of reviewed "
    "items (the same code as `scanbatch eval`), and estimates over every finished record "
    "with 95 % intervals, from the audit sample (see the README, Audit estimates)",
    query=MetricsQuery,
    responses={
        200: MetricsBody,
        400: "Unknown groupBy, a bad time or a time range backwards",
        403: NOT_REVIEWER,
    },
)


@bp.get("/review/metrics")
def review_metrics() -> Response:
    require_reviewer()
    q = query_args(MetricsQuery)
    body = MetricsBody.model_validate(metrics.review_metrics(_reviews(), q.group_by, q.scope()))
    return jsonify(body.to_json_dict())


operation(
    "get",
    "/library/scan/review/dataset",
    "The golden set: a zip, streamed, of every reviewed item in the dataset format",
    query=DatasetQuery,
    responses={
        200: Reply(
            "A zip (records whose photos the retention removed are left out)",
            content={"application/zip": {}},
        ),
        400: "since is not an ISO 8601 time with its zone",
        403: NOT_REVIEWER,
        503: Reply(
            f"{MAX_EXPORTS} exports are being sent already; retry after Retry-After seconds",
            model=ErrorBody,
            headers={"Retry-After": {"type": "integer"}},
        ),
    },
)


@bp.get("/review/dataset")
def review_dataset() -> Response:
    require_reviewer()
    since = query_args(DatasetQuery).since
    slots = services().export_slots
    if not slots.acquire(blocking=False):
        busy = error_response(
            503,
            f"{MAX_EXPORTS} dataset exports are being sent already (the most at once): "
            f"retry in {EXPORT_RETRY_AFTER} s",
        )
        busy.headers["Retry-After"] = str(EXPORT_RETRY_AFTER)
        return busy
    try:
        reviewed = list(_reviews().reviewed(since=since))
        found = [[f.path for f in _photo_files(_folder(i.job_id), i.item_index)] for i in reviewed]
        # A dataset item has its photos: a record reviewed after the retention removed them
        # is left out (its review stays in the store and in the metrics).
        kept = [
            (i, p) for i, p in zip(reviewed, found, strict=True) if len(p) == len(i.photo_types)
        ]
        items = [i for i, _ in kept]
        photo_paths = [p for _, p in kept]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        response = Response(
            golden_set.zip_stream(golden_set.dataset_entries(items, photo_paths)),
            mimetype="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="scanbatch-golden-{stamp}.zip"',
                "X-Reviewed-Items": str(len(items)),
            },
        )
    except BaseException:
        slots.release()
        raise
    # The slot is held until the server closes the stream: sent whole, or the client gone.
    response.call_on_close(slots.release)
    return response


operation(
    "get",
    "/library/scan/catalog/search",
    "Catalog albums whose artist and title hold every word of q (or whose id is q)",
    query=CatalogQuery,
    responses={200: AlbumList, 400: "q is empty or too long, or limit is out of range"},
)


@bp.get("/catalog/search")
def catalog_search() -> Response:
    current_key()
    query = query_args(CatalogQuery)
    q = query.q.strip()
    words = q.split()
    if not words:
        raise BadRequest("q must name an artist, a title, words of either, or an album id")
    catalog = services().store.catalog
    if q.isascii() and q.isdigit():
        # Only the ASCII digits make an id ('²' or '١٢' are words to look for, like any other).
        album = catalog.album(whole_number(q, "q (an album id)", 0, MAX_ID))
        albums = [album] if album else []
    else:
        albums = catalog.search(words, query.limit)
    return jsonify(AlbumList(albums=albums).to_json_dict())
