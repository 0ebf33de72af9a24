"""The station's housekeeping, for a stationManager: photo retention (`POST /admin/prune`)
and what the data folder holds (`GET /admin/usage`). `scanbatch prune` and `scanbatch usage`
come through here while the server runs (it holds the store)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from scanbatch.models import PruneRequest, PruneSummary
from scanbatch.usage import UsageReport, usage
from scanbatch.web.auth import require_manager
from scanbatch.web.forms import json_body
from scanbatch.web.openapi import operation
from scanbatch.web.services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")

PRUNE = "prune photos"
USAGE = "see the disk usage"


operation(
    "post",
    "/admin/prune",
    "Remove the photos and thumbnails of finished records nobody reviewed whose job ended "
    "more than olderThanDays ago (reviewed records keep theirs; readings, results.jsonl and "
    "notebooks stay); with dryRun, only count them",
    json_body=PruneRequest,
    responses={
        200: PruneSummary,
        400: "olderThanDays or dryRun missing or invalid, or an unknown field (named)",
        403: f"Only a stationManager may {PRUNE}",
    },
)


@bp.post("/prune")
def prune_photos() -> Response:
    require_manager(PRUNE)
    body = json_body(PruneRequest)
    summary = services().pruner.run(body.older_than_days, dry_run=body.dry_run)
    return jsonify(summary.to_json_dict())


operation(
    "get",
    "/admin/usage",
    "Disk use of the data folder per part (store, photos, thumbnails, notebooks, experiments, "
    "backlog, logs), the disk's free space, and job and record counts",
    responses={200: UsageReport, 403: f"Only a stationManager may {USAGE}"},
)


@bp.get("/usage")
def disk_usage() -> Response:
    require_manager(USAGE)
    svc = services()
    return jsonify(usage(svc.store, svc.settings).to_json_dict())
