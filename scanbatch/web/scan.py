"""`POST /library/scan`: the station's original single scan, answered synchronously.

The record goes through the same code as one item of a batch (`pipeline.process_item` on its
photos, read into memory from the request's staging folder, then the same catalog matcher and
the same `matchedAlbum` hydration), so a photo reads the same either way. Nothing is written
but the upload's staging, which goes when the request ends."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request

from scanbatch.errors import BadRequest, ExtractionError, ScanbatchError
from scanbatch.extractors.base import snapshot_catalog
from scanbatch.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from scanbatch.models import (
    MAX_IMAGES_PER_ITEM,
    ItemOutcome,
    ManifestItem,
    Photo,
    ScanForm,
    ScanResponse,
    Status,
)
from scanbatch.pipeline import process_item
from scanbatch.validation import validate_model
from scanbatch.web.auth import require_write
from scanbatch.web.forms import single_field, uploaded_images
from scanbatch.web.openapi import operation
from scanbatch.web.services import Scanner, Services, services
from scanbatch.web.uploads import (
    MAX_FORM_FIELD_BYTES,
    STAGING_KEY,
    Staging,
    uploads_disk_full,
)

if TYPE_CHECKING:
    from scanbatch.catalog import Matcher

bp = Blueprint("scan", __name__, url_prefix="/library/scan")

HINT = "send multipart/form-data with 1 to 5 'images' files and optional 'photo_types'"
TOO_MANY = f"Each item cannot exceed {MAX_IMAGES_PER_ITEM} images"

_FIELDS = ScanForm.model_json_schema()["properties"]
SCAN_FORM = {
    "type": "object",
    "required": ["images"],
    "properties": {
        "images": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_IMAGES_PER_ITEM,
            "items": {"type": "string", "format": "binary"},
            "description": f"JPEG, PNG, WebP or HEIC/HEIF, at most {MAX_IMAGE_BYTES // 2**20} "
            f"MiB and {MAX_IMAGE_PIXELS:,} pixels each",
        },
        "photo_types": {
            "type": "string",
            "maxLength": MAX_FORM_FIELD_BYTES,
            "description": _FIELDS["photo_types"]["description"],
        },
        **{
            name: {k: v for k, v in prop.items() if k not in ("title", "default")}
            for name, prop in _FIELDS.items()
            if name != "photo_types"
        },
    },
}


class ScanTimeout(ScanbatchError):
    status = 504


operation(
    "post",
    "/library/scan",
    "Read and match one record synchronously (musicDirector or stationManager)",
    description="The record is processed by the same code as one batch item. The answer "
    "comes within SCANBATCH_SCAN_TIMEOUT seconds (default 60) or is a 504; use the batch "
    "route for anything slow.",
    multipart=SCAN_FORM,
    responses={
        200: ScanResponse,
        400: "No images provided; more than 5 images; photo_types not matching the images; a "
        "malformed field or a file that is not an image (the message names it)",
        403: "The caller's role may only read (dj)",
        413: "A file over 10 MiB, a form field over 256 KiB or a body over the request limit",
        502: "The extractor failed to read the photos (the message says why)",
        503: "Too many single scans at once; retry shortly",
        504: "The scan took longer than the time limit",
    },
)


@bp.post("")
@uploads_disk_full
def scan_one() -> Response:
    require_write()
    svc = services()
    staging = Staging(svc.settings.jobs_dir, MAX_IMAGES_PER_ITEM, TOO_MANY)
    request.environ[STAGING_KEY] = staging
    try:
        files = uploaded_images(HINT)
        if not files:
            raise BadRequest(f"No images provided: {HINT}")
        fields = {name: single_field(name) for name in request.form}
        form = validate_model(ScanForm, fields, "")
        photo_types = form.photo_types or ["photo"] * len(files)
        if len(photo_types) != len(files):
            raise BadRequest(
                f"photo_types has {len(photo_types)} entries but {len(files)} images were "
                "sent: give one photo type per image"
            )
        mimes = [f.mime_type() for f in files]
        item = ManifestItem(image_count=len(files), photo_types=photo_types, context=form.context())
        # The slot first, then the photos into memory: a scan waiting for a slot (or refused
        # one) holds no photo bytes, only their staged files.
        scanner = svc.scanner()
        _take_slot(scanner, svc.settings.scan_timeout)
        try:
            photos = [
                Photo(data=f.read_bytes(), mime_type=mime, photo_type=photo_type)
                for f, mime, photo_type in zip(files, mimes, photo_types, strict=True)
            ]
        except BaseException:
            scanner.slots.release()
            raise
    finally:
        staging.cleanup()
    outcome = _run(photos, item, svc, scanner)
    return jsonify(_answer(outcome, svc).to_json_dict())


def _take_slot(scanner: Scanner, limit: float) -> None:
    if not scanner.slots.acquire(timeout=min(5.0, limit)):
        raise ScanbatchError(
            "Too many single scans are running: retry in a few seconds, or submit a batch",
            status=503,
        )


def _run(photos: list[Photo], item: ManifestItem, svc: Services, scanner: Scanner) -> ItemOutcome:
    """The scan on the scanner's pool, in the slot the caller took (released when it ends)."""
    limit = svc.settings.scan_timeout

    def work() -> ItemOutcome:
        try:
            extractor, matcher = scanner.extractor(), _matcher(svc)
            return process_item(photos, 0, item, extractor, matcher, job="(single scan)")
        finally:
            scanner.slots.release()

    future = scanner.pool.submit(work)
    try:
        return future.result(timeout=limit)
    except FutureTimeout:
        raise ScanTimeout(
            f"The scan took longer than {limit:g} s (SCANBATCH_SCAN_TIMEOUT): send fewer or "
            "smaller photos, or submit it as a batch (POST /library/scan/batch) and poll"
        ) from None


def _matcher(svc: Services) -> Matcher | None:
    return snapshot_catalog(svc.catalog_snapshot(), svc.settings.match_min_score)


def _answer(outcome: ItemOutcome, svc: Services) -> ScanResponse:
    if outcome.status != Status.COMPLETED:
        raise ExtractionError(f"Extraction failed: {outcome.error_message}")
    album = None
    if outcome.matched_album_id is not None:
        album = svc.store.catalog.album(outcome.matched_album_id)
    return ScanResponse(
        extraction=outcome.extraction or {},
        matched_album_id=outcome.matched_album_id if album else None,
        matched_album=album,
    )
