"""The station's batch endpoints under /library/scan."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from scanbatch.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from scanbatch.jobfolder import JobFolder
from scanbatch.models import JobView, Manifest
from scanbatch.runner import JobRunner
from scanbatch.settings import Settings
from scanbatch.store import JobStore, parse_job_id
from scanbatch.store.reviews import ReviewStore
from scanbatch.submit import create_job
from scanbatch.validation import parse_manifest
from scanbatch.web.auth import current_key, require_write
from scanbatch.web.uploads import STAGING_KEY, StagedFile, Staging

bp = Blueprint("batch", __name__, url_prefix="/library/scan")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
POLL_AFTER_SECONDS = 2
MAX_IDEMPOTENCY_KEY = 200


@dataclass
class Services:
    settings: Settings
    store: JobStore
    runner: JobRunner
    submit_lock: threading.Lock


def services() -> Services:
    return current_app.extensions["scanbatch"]


def _job_response(view: JobView, status: int = 200) -> Response:
    response = jsonify(view.to_json_dict())
    response.status_code = status
    if not view.status.finished:
        # The app polls; tell it how often is useful.
        response.headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    return response


def _accepted(job_id: str, status: str, total: int) -> Response:
    response = jsonify({"jobId": job_id, "status": status, "totalItems": total})
    response.status_code = 202
    response.headers["Location"] = url_for("batch.get_batch", job_id=job_id)
    return response


def _request_hash(manifest_raw: str, files: list[StagedFile]) -> str:
    digest = hashlib.sha256(manifest_raw.encode())
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


@bp.post("/batch")
def submit_batch() -> Response:
    key = require_write()
    svc = services()
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None and not 0 < len(idem_key.strip()) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    staging = Staging(svc.settings.jobs_dir)
    request.environ[STAGING_KEY] = staging
    try:
        if not (request.mimetype or "").startswith("multipart/form-data"):
            raise BadRequest(
                "Send the batch as multipart/form-data with 'images' files and a 'manifest' field"
            )
        files = [fs.stream for fs in request.files.getlist("images")]
        unexpected = sorted(k for k in request.files if k != "images")
        if unexpected:
            raise BadRequest(f"Unexpected file field '{unexpected[0]}': send photos as 'images'")
        manifest_raw = request.form.get("manifest")
        manifest = parse_manifest(manifest_raw, len(files))
        mimes = [f.mime_type() for f in files]
        request_hash = _request_hash(manifest_raw, files)
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
            )
    finally:
        staging.cleanup()
    svc.runner.submit(job_id)
    return _accepted(job_id, "pending", len(manifest.items))


@bp.get("/batch")
def list_batches() -> Response:
    key = current_key()
    limit = _int_arg("limit", 20)
    offset = _int_arg("offset", 0)
    if offset < 0:
        raise BadRequest("offset must be an integer of at least 0")
    limit = min(max(limit, 1), 100)
    return jsonify(services().store.list_jobs(key.user_id, limit, offset).to_json_dict())


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got '{raw[:50]}'") from None


@bp.get("/batch/<job_id>")
def get_batch(job_id: str) -> Response:
    key = current_key()
    view = services().store.get_job(job_id, key.user_id)
    body, etag = _encoded(view)
    if request.if_none_match.contains_weak(etag):
        # The app polls: an unchanged job costs it no body.
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(body, mimetype=current_app.json.mimetype)
    response.set_etag(etag)
    # The body belongs to one user and changes while the job runs: caches must ask each time.
    response.headers["Cache-Control"] = "private, no-cache"
    if not view.status.finished:
        response.headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    return response


# The store returns the same view object until its job changes, so a view's JSON body and
# ETag are made once per change, not once per poll. Each entry holds its view, so an id() here
# is never reused by another object while the entry lives.
_ENCODED: OrderedDict[int, tuple[JobView, bytes, str]] = OrderedDict()
_ENCODED_SIZE = 1024
_encoded_lock = threading.Lock()


def _encoded(view: JobView) -> tuple[bytes, str]:
    with _encoded_lock:
        entry = _ENCODED.get(id(view))
    if entry is None:
        body = current_app.json.response(view.to_json_dict()).get_data()
        entry = (view, body, hashlib.sha256(body).hexdigest()[:32])
        with _encoded_lock:
            _ENCODED[id(view)] = entry
            if len(_ENCODED) > _ENCODED_SIZE:
                _ENCODED.popitem(last=False)
    return entry[1], entry[2]


def _cancel(job_id: str) -> str:
    """Cancel the job for its owner or a stationManager (404 for anyone else: another user's
    job is indistinguishable from a missing one). Returns the canonical job id."""
    key = require_write()
    job_id = parse_job_id(job_id)
    svc = services()
    svc.store.get_job(job_id, None if key.role == "stationManager" else key.user_id)
    if svc.store.unfinished_items(job_id):
        svc.runner.cancel(job_id)
    return job_id


@bp.post("/batch/<job_id>/cancel")
def cancel_batch(job_id: str) -> Response:
    job_id = _cancel(job_id)
    return _job_response(services().store.get_job(job_id))


@bp.delete("/batch/<job_id>")
def delete_batch(job_id: str) -> Response:
    svc = services()
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    reviewed = ReviewStore(svc.store.db).count_for_job(parse_job_id(job_id))
    if reviewed:
        # Reviews are ground truth: they must not vanish with the job by accident.
        if not force:
            raise Conflict(
                f"The job has {reviewed} reviewed item(s) whose truth would be lost: export "
                "the golden set first (GET /library/scan/review/dataset); a stationManager "
                "may delete anyway with ?force=true"
            )
        if current_key().role != "stationManager":
            raise Forbidden("Only a stationManager may delete a job with reviewed items")
    job_id = _cancel(job_id)
    svc.store.delete_job(job_id)
    JobFolder.for_job(svc.settings.jobs_dir, job_id).remove()
    return Response(status=204)


@bp.get("/batch/<job_id>/notebook")
def batch_notebook(job_id: str) -> Response:
    from nbconvert import HTMLExporter

    key = current_key()
    job_id = parse_job_id(job_id)
    svc = services()
    svc.store.get_job(job_id, key.user_id)
    path = JobFolder.for_job(svc.settings.jobs_dir, job_id).notebook_path
    if not path.exists():
        raise NotFound(
            "The job's notebook does not exist yet: it is written when processing starts"
        )
    body, _ = HTMLExporter().from_filename(str(path))
    return Response(body, mimetype="text/html")
