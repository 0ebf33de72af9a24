"""The station's batch endpoints under /library/scan."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from scanbatch.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from scanbatch.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from scanbatch.jobfolder import JobFolder
from scanbatch.models import (
    MAX_IMAGES,
    MAX_IMAGES_PER_ITEM,
    MAX_ITEMS,
    Accepted,
    JobList,
    JobListQuery,
    JobMode,
    JobView,
    Manifest,
)
from scanbatch.names import Role
from scanbatch.store import parse_job_id
from scanbatch.store.reviews import reviewed_message
from scanbatch.store.webhooks import Callback
from scanbatch.submit import create_job
from scanbatch.validation import job_mode, parse_manifest
from scanbatch.web.auth import current_key, require_write, visible_to
from scanbatch.web.forms import query_args, single_field, uploaded_images
from scanbatch.web.openapi import JOB_ID, Reply, operation
from scanbatch.web.polls import job_answer, poll_after
from scanbatch.web.services import services
from scanbatch.web.tickets import redeem_for_batch
from scanbatch.web.uploads import (
    MAX_FORM_FIELD_BYTES,
    MAX_FORM_PARTS,
    MAX_REQUEST_BYTES,
    STAGING_KEY,
    StagedFile,
    Staging,
    uploads_disk_full,
)
from scanbatch.web.webhooks import CALLBACK_FIELD, callback_field

MULTIPART_HINT = "send the batch as multipart/form-data with 'images' files and a 'manifest' field"

bp = Blueprint("batch", __name__, url_prefix="/library/scan")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY = 200


def _job_response(view: JobView, status: int = 200) -> Response:
    response = jsonify(view.to_json_dict())
    response.status_code = status
    if (after := poll_after(view)) is not None:  # the app polls: how often is useful
        response.headers["Retry-After"] = after
    return response


def _accepted(job_id: str, status: str, total: int) -> Response:
    response = jsonify({"jobId": job_id, "status": status, "totalItems": total})
    response.status_code = 202
    response.headers["Location"] = url_for("batch.get_batch", job_id=job_id)
    return response


def _request_hash(
    manifest_raw: str, files: list[StagedFile], mode: JobMode, callback: Callback | None
) -> str:
    """What makes a retried POST the same request: its manifest, photos, mode and callback
    (the same Idempotency-Key with another `mode` or `callbackUrl` is another request: 422)."""
    digest = hashlib.sha256(manifest_raw.encode())
    # Default and absent hash alike, so a job posted before these fields existed still matches.
    if mode != JobMode.INTERACTIVE or callback is not None:
        extra = {"mode": mode.value, "callbackUrl": callback.url if callback else None}
        digest.update(json.dumps(extra, sort_keys=True).encode())
    for f in files:
        digest.update(f.sha256.digest())
    return digest.hexdigest()


def _move_into(files: list[StagedFile], mimes: list[str], manifest: Manifest):
    def write(folder: JobFolder) -> None:
        staged = iter(zip(files, mimes, strict=True))
        for index, item in enumerate(manifest.items):
            for position in range(item.image_count):
                f, mime = next(staged)
                f.close()
                os.replace(f.path, folder.image_path(index, position, mime))

    return write


BATCH_FORM = {
    "type": "object",
    "required": ["images", "manifest"],
    "properties": {
        "images": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_IMAGES,
            "items": {"type": "string", "format": "binary"},
            "description": f"JPEG, PNG, WebP or HEIC/HEIF (type read from the bytes), at most "
            f"{MAX_IMAGE_BYTES // 2**20} MiB and {MAX_IMAGE_PIXELS:,} pixels each, in manifest "
            "order",
        },
        "manifest": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/Manifest"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/ManifestItem"}},
                ]
            },
            "maxLength": MAX_FORM_FIELD_BYTES,
            "description": 'JSON text: {"items": [ManifestItem], "mode"?} or a bare '
            f"[ManifestItem] array, 1 to {MAX_ITEMS} items",
        },
        "mode": {
            "type": "string",
            "enum": [m.value for m in JobMode],
            "default": JobMode.INTERACTIVE.value,
            "description": "backlog: the records wait for Google's Batch API (half the price, "
            "answered within 24 h; packed with other jobs' records); an extractor that cannot "
            "batch runs the job interactively and its backlog.state says so",
        },
        "callbackUrl": CALLBACK_FIELD,
    },
}
SEED_MESSAGES = [
    "No images provided",
    "Missing or invalid manifest field",
    "Invalid JSON in manifest field",
    "Manifest must contain a non-empty items array",
    f"Batch cannot exceed {MAX_ITEMS} items",
    f"Total images cannot exceed {MAX_IMAGES}",
    f"Each item cannot exceed {MAX_IMAGES_PER_ITEM} images",
    "Image count mismatch: N files uploaded but manifest expects M",
]
TOO_LARGE = (
    f"A file over {MAX_IMAGE_BYTES // 2**20} MiB, a form field over "
    f"{MAX_FORM_FIELD_BYTES // 1024} KiB, more than {MAX_FORM_PARTS} parts, or a body over "
    f"{MAX_REQUEST_BYTES} bytes (refused from its Content-Length before it is read)"
)
FORBIDDEN = "The caller's role may only read (dj)"
JOB_ERRORS = {400: "Invalid job ID format", 404: "Job not found (missing, or another user's job)"}

operation(
    "post",
    "/library/scan/batch",
    "Submit a batch (musicDirector or stationManager)",
    multipart=BATCH_FORM,
    parameters=[
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
            "description": "the same key and request within 24 h returns the same job; the "
            "same key with another request is a 422",
        }
    ],
    responses={
        202: Reply(
            "Accepted; poll the Location header's URL",
            Accepted,
            headers={"Location": {"type": "string"}},
        ),
        400: "A seed check failed ("
        + "; ".join(SEED_MESSAGES)
        + ") or a value is malformed (callbackUrl included: not http(s), over 2,000 "
        "characters, its host not in SCANBATCH_WEBHOOK_HOSTS, or no SCANBATCH_WEBHOOK_SECRET); "
        "the message names the field",
        403: FORBIDDEN,
        413: TOO_LARGE,
        422: "Idempotency-Key reused with a different request",
    },
)


@bp.post("/batch")
@uploads_disk_full
def submit_batch() -> Response:
    key = require_write()
    svc = services()
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None and not 0 < len(idem_key.strip()) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    staging = Staging(svc.settings.jobs_dir)
    request.environ[STAGING_KEY] = staging
    try:
        files = uploaded_images(MULTIPART_HINT)
        redeem_for_batch(len(files), sum(f.size for f in files))
        # No images is the station's first check, before anything about the manifest.
        manifest_raw = single_field("manifest") if files else None
        manifest = parse_manifest(manifest_raw, len(files))
        mode = job_mode(single_field("mode"), manifest)
        callback = callback_field(svc.settings)
        mimes = [f.mime_type() for f in files]
        request_hash = _request_hash(manifest_raw, files, mode, callback)
        with svc.submit_lock:  # lookup and create as one step, so a retried POST can't double
            if idem_key is not None:
                found = svc.store.find_idempotent(key.user_id, idem_key, IDEMPOTENCY_WINDOW)
                if found is not None:
                    job_id, previous_hash = found
                    if previous_hash != request_hash:
                        raise Unprocessable(
                            "Idempotency-Key was already used with a different request in the "
                            "last 24 hours: use a new key for a new batch"
                        )
                    view = svc.store.get_job(job_id, key.user_id)
                    return _accepted(job_id, view.status.value, view.total_items)
            job_id = create_job(
                svc.store,
                svc.settings.jobs_dir,
                key.user_id,
                manifest,
                _move_into(files, mimes, manifest),
                extractor=svc.settings.extractor,
                idempotency_key=idem_key,
                request_hash=request_hash,
                mode=mode,
                callback=callback,
            )
    finally:
        staging.cleanup()
    if svc.store.backlog.is_waiting(job_id):
        svc.backlog.wake()  # its records wait for a Google batch; the backlog hands it over
    else:
        svc.runner.submit(job_id)
    return _accepted(job_id, "pending", len(manifest.items))


operation(
    "get",
    "/library/scan/batch",
    "The caller's jobs, newest first",
    query=JobListQuery,
    responses={
        200: JobList,
        400: "limit or offset is not a valid integer, or offset is out of range",
    },
)


@bp.get("/batch")
def list_batches() -> Response:
    key = current_key()
    query = query_args(JobListQuery)
    limit = min(max(query.limit, 1), 100)  # clamped, as the station's backend does
    return jsonify(services().store.list_jobs(key.user_id, limit, query.offset).to_json_dict())


operation(
    "get",
    "/library/scan/batch/{jobId}",
    "A job with its results in item order (the owner's, or any job for a stationManager)",
    parameters=[
        JOB_ID,
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "the ETag of a previous answer: 304 while the job is unchanged",
        },
    ],
    responses={
        200: Reply(
            "The job; Retry-After is set while it runs",
            JobView,
            headers={"Retry-After": {"type": "integer"}, "ETag": {"type": "string"}},
        ),
        304: Reply(
            "Not modified: the job is as the ETag in If-None-Match says (no body)",
            headers={"ETag": {"type": "string"}},
        ),
        **JOB_ERRORS,
    },
)


@bp.get("/batch/<job_id>")
def get_batch(job_id: str) -> Response:
    # Most polls are answered before Flask, by JobPolls; this is the same answer, for the rest.
    answer = job_answer(current_app, current_key(), job_id, request.headers.get("If-None-Match"))
    return current_app.response_class(answer.body, answer.status, answer.headers)


def _cancel(job_id: str) -> str:
    """Cancel the job for its owner or a stationManager (404 for anyone else: another user's
    job is indistinguishable from a missing one). Returns the canonical job id."""
    key = require_write()
    job_id = parse_job_id(job_id)
    svc = services()
    svc.store.get_job(job_id, visible_to(key))
    if svc.store.unfinished_items(job_id):
        svc.runner.cancel(job_id)
        svc.backlog.release()  # a Google batch no other job waits for is cancelled
    return job_id


operation(
    "post",
    "/library/scan/batch/{jobId}/cancel",
    "Cancel: unfinished items fail with 'cancelled', finished ones are kept (owner or "
    "stationManager)",
    parameters=[JOB_ID],
    responses={200: JobView, **JOB_ERRORS, 403: FORBIDDEN},
)


@bp.post("/batch/<job_id>/cancel")
def cancel_batch(job_id: str) -> Response:
    job_id = _cancel(job_id)
    return _job_response(services().store.get_job(job_id))


operation(
    "delete",
    "/library/scan/batch/{jobId}",
    "Cancel the job, then remove its rows and folder (owner or stationManager); a job with "
    "reviewed items is refused (409) unless a stationManager sends force=true",
    parameters=[
        JOB_ID,
        {
            "name": "force",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean", "default": False},
            "description": "stationManager only: delete even with reviewed items (their "
            "reviews go too)",
        },
    ],
    responses={
        204: Reply("Deleted"),
        **JOB_ERRORS,
        403: FORBIDDEN,
        409: "The job has reviewed items: export the golden set first, or force as a "
        "stationManager",
    },
)


@bp.delete("/batch/<job_id>")
def delete_batch(job_id: str) -> Response:
    svc = services()
    key = require_write()
    job_id = parse_job_id(job_id)
    svc.store.get_job(job_id, visible_to(key))  # another user's job: 404 before anything else
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    reviewed = svc.store.reviews.count_for_job(job_id)
    if reviewed:
        # Reviews are ground truth: they must not vanish with the job by accident.
        if not force:
            raise Conflict(reviewed_message(reviewed))
        if key.role != Role.STATION_MANAGER:
            raise Forbidden("Only a stationManager may delete a job with reviewed items")
    # Whatever still runs for it ends first: the items, or the notebook of a job already
    # answered, which writes its report into the folder about to go; and its Google batches,
    # where no other job waits for them.
    svc.runner.cancel(job_id)
    # Checked again as it deletes: a review saved during the cancel's wait is kept (409).
    try:
        svc.store.delete_job(job_id, with_reviews=force and key.role == Role.STATION_MANAGER)
    except Conflict as exc:
        raise Conflict(
            f"{exc.message} (a review was saved while the job was being cancelled: the job "
            "is cancelled, and kept)"
        ) from None
    JobFolder.for_job(svc.settings.jobs_dir, job_id).remove()
    svc.backlog.release()
    return Response(status=204)


operation(
    "get",
    "/library/scan/batch/{jobId}/notebook",
    "The executed processing notebook as HTML (the audit trail)",
    parameters=[JOB_ID],
    responses={
        200: Reply(
            "HTML that loads nothing from another site and runs no script",
            content={"text/html": {"schema": {"type": "string"}}},
            headers={"Content-Security-Policy": {"type": "string"}},
        ),
        400: JOB_ERRORS[400],
        404: "Job not found, or its notebook is not written yet",
    },
)


# nbconvert's lab template with nothing from another site: no require.js, MathJax or mermaid
# from cdnjs, no widget manager from unpkg. The processing notebook needs none of them (its
# outputs are HTML tables and inline JPEG thumbnails), a station's network may be offline,
# and a third-party script does not belong on a page that is only shown to a signed-in user.
_OFFLINE_TEMPLATE = "scanbatch-offline.html.j2"
_OFFLINE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
# What the page may load: its own inline styles and data: images (the thumbnails, the
# template's icons). No script runs at all, from anywhere; nothing is fetched from a site.
NOTEBOOK_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def notebook_html(path: Path) -> str:
    """The executed notebook at `path` as one self-contained HTML page."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[DictLoader({_OFFLINE_TEMPLATE: _OFFLINE})],
        template_file=_OFFLINE_TEMPLATE,
    )
    body, _ = exporter.from_filename(str(path))
    return body


@bp.get("/batch/<job_id>/notebook")
def batch_notebook(job_id: str) -> Response:
    key = current_key()
    job_id = parse_job_id(job_id)
    svc = services()
    svc.store.get_job(job_id, visible_to(key))
    path = JobFolder.for_job(svc.settings.jobs_dir, job_id).notebook_path
    if not path.exists():
        raise NotFound(
            "The job's notebook does not exist yet: it is written once its items have started "
            "(a job can be answered a moment before): try again in a second"
        )
    response = Response(notebook_html(path), mimetype="text/html")
    response.headers["Content-Security-Policy"] = NOTEBOOK_CSP
    return response
