"""Completion webhooks over HTTP: the batch POST's `callbackUrl` field, and the route that
lists a job's deliveries (`scanbatch.webhooks` sends them)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for

from scanbatch.models import WebhookDeliveryList
from scanbatch.settings import Settings
from scanbatch.store import parse_job_id
from scanbatch.store.webhooks import Callback
from scanbatch.web.auth import current_key, visible_to
from scanbatch.web.forms import single_field
from scanbatch.web.openapi import JOB_ID, operation
from scanbatch.web.services import services
from scanbatch.webhooks import FIELD, MAX_URL_LENGTH, check_callback_url, check_secret

bp = Blueprint("webhooks", __name__, url_prefix="/library/scan")

CALLBACK_FIELD = {
    "type": "string",
    "format": "uri",
    "maxLength": MAX_URL_LENGTH,
    "description": "optional: an absolute http(s) URL, its host (host:port) listed in "
    "SCANBATCH_WEBHOOK_HOSTS, that is POSTed the job's summary when it ends, signed per "
    "Standard Webhooks with SCANBATCH_WEBHOOK_SECRET (see GET .../webhooks)",
}


def callback_field(settings: Settings) -> Callback | None:
    """The batch POST's `callbackUrl`, checked (a 400 names what to fix); None without one."""
    raw = single_field(FIELD)
    if raw is None or not raw.strip():
        return None
    url = check_callback_url(raw.strip(), settings)
    check_secret()
    # The body's `url` is the job's GET URL as this client reached the server.
    return Callback(url, url_for("batch.list_batches", _external=True) + "/")


operation(
    "get",
    "/library/scan/batch/{jobId}/webhooks",
    "The job's completion webhooks, each with every attempt (the owner's, or any job for a "
    "stationManager)",
    parameters=[JOB_ID],
    responses={
        200: WebhookDeliveryList,
        400: "Invalid job ID format",
        404: "Job not found (missing, or another user's job)",
    },
)


@bp.get("/batch/<job_id>/webhooks")
def job_webhooks(job_id: str) -> Response:
    key = current_key()
    job_id = parse_job_id(job_id)
    svc = services()
    svc.store.get_job(job_id, visible_to(key))  # another user's job: 404, as a missing one
    return jsonify(svc.store.webhooks.for_job(job_id).to_json_dict())
