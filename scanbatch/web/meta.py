"""Service endpoints: health and the OpenAPI document."""

from __future__ import annotations

import shutil
from pathlib import Path

from flask import Blueprint, Response, jsonify

from scanbatch import __version__
from scanbatch.errors import ConfigError
from scanbatch.extractors import get_extractor_class
from scanbatch.models import Health
from scanbatch.web.openapi import Reply, openapi_document, operation
from scanbatch.web.services import services

bp = Blueprint("meta", __name__)

operation(
    "get",
    "/healthz",
    "Liveness, queue length, running jobs, and whether a warm kernel is ready (a server "
    "answers once one is, or once starting one failed)",
    public=True,
    responses={200: Health},
)


@bp.get("/healthz")
def healthz() -> Response:
    svc = services()
    pool = svc.runner.pool
    ready, problem = pool.ready, pool.last_failure
    health = Health(
        status="ok" if ready else "failing" if problem else "warming",
        version=__version__,
        extractor=svc.settings.extractor,
        extractor_can_batch=can_batch(svc.settings.extractor),
        queued_jobs=svc.runner.queued,
        running_jobs=svc.runner.running,
        warm_kernels=ready,
        problem=problem,
        disk_free_bytes=_free_bytes(svc.settings.data_dir),
    )
    return jsonify(health.to_json_dict())


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:  # a probe answers whatever the disk does
        return None


def can_batch(extractor: str) -> bool:
    try:
        return get_extractor_class(extractor).can_batch
    except ConfigError:  # the server checked it when it started; a plugin gone since: no
        return False


operation(
    "get",
    "/openapi.json",
    "This document",
    public=True,
    responses={
        200: Reply("OpenAPI 3.1", content={"application/json": {"schema": {"type": "object"}}})
    },
)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
