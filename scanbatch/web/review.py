"""The auditing routes beside the station's contract: the review queue, photos and their
thumbnails, saving a review (ground truth), metrics, the golden-set export and a catalog search.

The queue, metrics and export are for the roles `musicDirector` and `stationManager` (every
user's items); `dj` gets 403. A photo may be read by the job's owner and by those roles."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for

from scanbatch import dataset
from scanbatch.catalog.schema import VIEW, VIEW_COLUMNS
from scanbatch.errors import BadRequest, Forbidden, NotFound
from scanbatch.images import EXTENSIONS
from scanbatch.jobfolder import JobFolder
from scanbatch.models import MatchedAlbum
from scanbatch.review import GroupBy, ReviewSort, ReviewState, parse_review
from scanbatch.store import ApiKey, parse_job_id
from scanbatch.store.reviews import ReviewStore
from scanbatch.thumbnails import cached_thumbnail, check_size
from scanbatch.web.auth import current_key

bp = Blueprint("review", __name__, url_prefix="/library/scan")

REVIEW_ROLES = frozenset({"musicDirector", "stationManager"})
MAX_PAGE = 100
MAX_SEARCH = 50
THUMBNAILS = "thumbnails"
_MIME_BY_SUFFIX = {suffix: mime for mime, suffix in EXTENSIONS.items()}

E = TypeVar("E", bound=StrEnum)


def _services():
    return current_app.extensions["scanbatch"]


def _reviews() -> ReviewStore:
    return ReviewStore(_services().store.db)


def require_reviewer() -> ApiKey:
    key = current_key()
    if key.role not in REVIEW_ROLES:
        raise Forbidden(
            f"Role '{key.role}' may not audit scans: the review routes need the "
            "musicDirector or stationManager role"
        )
    return key


def _folder(job_id: str) -> JobFolder:
    return JobFolder.for_job(_services().settings.jobs_dir, job_id)


def _enum_arg(name: str, enum: type[E], default: E) -> E:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(f"{name} must be one of {allowed}, got '{raw[:50]}'") from None


def _int_arg(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise BadRequest(f"{name} must be an integer {bounds}, got '{raw[:50]}'")
    return value


def _index(raw: str, what: str) -> int:
    if not raw.isdigit():
        raise BadRequest(f"{what} must be a whole number of at least 0, got '{raw[:50]}'")
    return int(raw)


def _photo_files(folder: JobFolder, item_index: int) -> list[Path]:
    return folder.image_paths(item_index) if folder.images_dir.is_dir() else []


def _photos(job_id: str, item_index: int, photo_types: list[str]) -> list[tuple[str, str]]:
    paths = _photo_files(_folder(job_id), item_index)
    return [
        (ptype, _MIME_BY_SUFFIX.get(p.suffix, "application/octet-stream"))
        for ptype, p in zip(photo_types, paths, strict=False)
    ]


def _photo_url(job_id: str, item_index: int, n: int) -> str:
    return url_for("review.photo", job_id=job_id, item_index=item_index, n=n)


@bp.get("/review/items")
def review_items() -> Response:
    require_reviewer()
    job_id = request.args.get("jobId") or None
    page = _reviews().items(
        state=_enum_arg("state", ReviewState, ReviewState.UNREVIEWED),
        sort=_enum_arg("sort", ReviewSort, ReviewSort.CONFIDENCE),
        job_id=parse_job_id(job_id) if job_id else None,
        user_id=request.args.get("userId") or None,
        limit=_int_arg("limit", 20, 1, MAX_PAGE),
        offset=_int_arg("offset", 0, 0),
        photos=_photos,
        photo_url=_photo_url,
    )
    return jsonify(page.to_json_dict())


@bp.get("/batch/<job_id>/items/<item_index>/photos/<n>")
def photo(job_id: str, item_index: str, n: str) -> Response:
    key = current_key()
    job_id = parse_job_id(job_id)
    index, position = _index(item_index, "itemIndex"), _index(n, "photo index")
    owner = None if key.role in REVIEW_ROLES else key.user_id
    view = _services().store.get_job(job_id, owner)  # 404 for another user's job
    if index >= view.total_items:
        raise NotFound(f"Job has no item {index}: its items are 0..{view.total_items - 1}")
    folder = _folder(job_id)
    paths = _photo_files(folder, index)
    if position >= len(paths):
        raise NotFound(
            f"Item {index} has {len(paths)} photo(s): use an index from 0 to {len(paths) - 1}"
        )
    path = paths[position]
    size = request.args.get("size")
    if size is not None and size != "":
        target = cached_thumbnail(path, check_size(_index(size, "size")), folder.path / THUMBNAILS)
        return send_file(target, mimetype="image/jpeg", max_age=86400)
    mime = _MIME_BY_SUFFIX.get(path.suffix, "application/octet-stream")
    return send_file(path, mimetype=mime, max_age=86400)


@bp.put("/batch/<job_id>/items/<item_index>/review")
def save_review(job_id: str, item_index: str) -> Response:
    key = require_reviewer()
    job_id = parse_job_id(job_id)
    index = _index(item_index, "itemIndex")
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest(
            "The review must be a JSON body (Content-Type: application/json): "
            '{"fields": {...}, "matchedAlbumId": <id or null>, "note": "..."}'
        )
    review = parse_review(body)
    return jsonify(_reviews().save(job_id, index, key.user_id, review).to_json_dict())


@bp.get("/batch/<job_id>/items/<item_index>/reviews")
def review_history(job_id: str, item_index: str) -> Response:
    require_reviewer()
    index = _index(item_index, "itemIndex")
    history = _reviews().history(parse_job_id(job_id), index)
    return jsonify({"reviews": [r.to_json_dict() for r in history]})


@bp.get("/review/metrics")
def review_metrics() -> Response:
    require_reviewer()
    group_by = _enum_arg("groupBy", GroupBy, GroupBy.NONE)
    return jsonify(dataset.metrics(_reviews().reviewed(group_by=group_by), group_by))


def _since() -> datetime | None:
    raw = request.args.get("since")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"since must be an ISO 8601 time such as 2026-11-26T09:00:00Z, got '{raw[:50]}'"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@bp.get("/review/dataset")
def review_dataset() -> Response:
    require_reviewer()
    items = list(_reviews().reviewed(since=_since()))
    photo_paths = [_photo_files(_folder(i.job_id), i.item_index) for i in items]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        dataset.zip_stream(dataset.dataset_entries(items, photo_paths)),
        mimetype="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="scanbatch-golden-{stamp}.zip"',
            "X-Reviewed-Items": str(len(items)),
        },
    )


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@bp.get("/catalog/search")
def catalog_search() -> Response:
    current_key()
    q = (request.args.get("q") or "").strip()
    if not q:
        raise BadRequest("q must name an artist, a title, words of either, or an album id")
    if len(q) > 200:
        raise BadRequest("q is too long: at most 200 characters")
    limit = _int_arg("limit", 10, 1, MAX_SEARCH)
    words = q.split()
    if q.isdigit():
        where, params = "id = ?", [int(q)]
    else:
        # Every word somewhere in "artist title": "miles kind" finds Miles Davis, Kind of Blue.
        where = " AND ".join(
            ["(artist_name || ' ' || album_title) ILIKE ? ESCAPE '\\'"] * len(words)
        )
        params = [f"%{_like_escape(w)}%" for w in words]
    with _services().store.db.read() as cur:
        rows = cur.execute(
            f"SELECT {', '.join(VIEW_COLUMNS)} FROM {VIEW} WHERE {where} "
            "ORDER BY artist_name, album_title, id LIMIT ?",
            [*params, limit],
        ).fetchall()
    albums = [MatchedAlbum(**dict(zip(VIEW_COLUMNS, r, strict=True))) for r in rows]
    return jsonify({"albums": [a.to_json_dict() for a in albums]})
