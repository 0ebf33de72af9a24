"""Service endpoints: health and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scanbatch import __version__
from scanbatch.web.openapi import openapi_document

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    svc = current_app.extensions["scanbatch"]
    return jsonify(
        {
            "status": "ok",
            "version": __version__,
            "extractor": svc.settings.extractor,
            "queuedJobs": svc.runner.queued,
            "runningJobs": svc.runner.running,
            "warmKernels": svc.runner.pool.ready,
        }
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
