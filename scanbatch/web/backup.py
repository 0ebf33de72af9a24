"""`GET /admin/backup`: the archive of the store (and with photos=true the job folders),
streamed while the server goes on working (scanbatch.backup). stationManager only; what
`scanbatch backup` downloads while the server holds the store."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from flask import Blueprint, Response
from pydantic import Field

from scanbatch.backup import Backup
from scanbatch.models import CamelModel, ErrorBody
from scanbatch.web.auth import require_manager
from scanbatch.web.errors import error_response
from scanbatch.web.forms import query_args
from scanbatch.web.openapi import Reply, operation
from scanbatch.web.services import services

bp = Blueprint("backup", __name__, url_prefix="/admin/backup")

FORBIDDEN = "Only a stationManager may take a backup"
RETRY_AFTER = 30  # seconds: a backup of a station's store takes about that
# One backup at a time per server: each holds a copy of the store's tables on its disk and a
# server thread while it streams.
_one_at_a_time = threading.Lock()


class BackupQuery(CamelModel):
    photos: bool = Field(
        False, description="true: the job folders (photos, results, notebooks) too"
    )


operation(
    "get",
    "/admin/backup",
    "A backup archive (tar) of the store, taken now, consistent; with photos=true the job "
    "folders too. Restore it with `scanbatch restore FILE` into an empty data folder",
    query=BackupQuery,
    responses={
        200: Reply(
            "The archive, streamed",
            content={"application/x-tar": {}},
            headers={
                "Content-Disposition": {"type": "string"},
                "X-Backup-Records": {"type": "integer"},
                "X-Backup-Reviews": {"type": "integer"},
            },
        ),
        400: "photos is not true or false",
        403: FORBIDDEN,
        507: "The data folder's disk is full: the copy of the store the archive is made from "
        "does not fit (nothing is left of it); free some space and try again",
        503: Reply(
            "A backup is being taken already; retry after Retry-After seconds",
            model=ErrorBody,
            headers={"Retry-After": {"type": "integer"}},
        ),
    },
)


@bp.get("")
def take_backup() -> Response:
    require_manager("take a backup")
    photos = query_args(BackupQuery).photos
    if not _one_at_a_time.acquire(blocking=False):
        busy = error_response(
            503, f"A backup is being taken already (one at a time): retry in {RETRY_AFTER} s"
        )
        busy.headers["Retry-After"] = str(RETRY_AFTER)
        return busy
    try:
        svc = services()
        backup = Backup.take(svc.store, svc.settings, photos=photos)
    except BaseException:
        _one_at_a_time.release()
        raise

    # Sent whole, or the client gone: the next backup may start, the copy goes.
    backup.on_close(_one_at_a_time.release)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = Response(
        backup.chunks(),
        mimetype="application/x-tar",
        headers={
            "Content-Disposition": f'attachment; filename="scanbatch-backup-{stamp}.tar"',
            "X-Backup-Records": str(backup.records),
            "X-Backup-Reviews": str(backup.reviews),
        },
    )
    response.call_on_close(backup.close)
    return response
