"""The HTTP façade, in three steps as flaskr's factory: `create_app(settings)` builds the Flask
app that owns the job store (opens it, constructs the runner: nothing runs yet); `prepare(app)`
does the start-up work on the data before the first request; `start(app)` starts the runner,
the backlog's engine, the completion webhooks' sender and the photo retention (with
SCANBATCH_KEEP_PHOTOS_DAYS). `shutdown(app)` stops them and closes the store."""

from __future__ import annotations

from flask import Flask

from scanbatch.backlog.engine import Backlog
from scanbatch.backup import remove_abandoned as remove_abandoned_backups
from scanbatch.catalog_sync import seed_catalog_if_empty
from scanbatch.extractors import check_extractor
from scanbatch.retention import PhotoPruner
from scanbatch.runner import JobRunner
from scanbatch.settings import Settings, load_settings
from scanbatch.store import JobStore
from scanbatch.web import (
    admin,
    backup,
    batch,
    cors,
    keys,
    meta,
    review,
    scan,
    tickets,
    webhooks,
)
from scanbatch.web.errors import register_error_handlers
from scanbatch.web.polls import JobPolls
from scanbatch.web.services import Services, attach, services_of
from scanbatch.web.uploads import (
    MAX_FORM_FIELD_BYTES,
    MAX_FORM_PARTS,
    MAX_REQUEST_BYTES,
    UploadRequest,
    remove_abandoned_staging,
)
from scanbatch.webhooks import WebhookSender

# One line per blueprint; each documents its own routes (scanbatch.web.openapi.operation).
BLUEPRINTS = [
    batch.bp,
    scan.bp,
    review.bp,
    tickets.bp,
    keys.bp,
    meta.bp,
    webhooks.bp,
    admin.bp,
    backup.bp,
]


def create_app(settings: Settings | None = None) -> Flask:
    """The app on the settings' store, built but not started (see `prepare` and `start`)."""
    settings = settings or load_settings()
    # A misconfigured extractor (e.g. gemini without GEMINI_API_KEY) stops the server here,
    # before it accepts a batch it could not process.
    check_extractor(settings.extractor, settings)
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD_BYTES
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.json.sort_keys = False
    store = JobStore.open(settings.store_path)
    runner = JobRunner(store, settings)
    backlog = Backlog(store, settings, runner.submit_group)
    sender = WebhookSender(store, settings)
    attach(app, Services(settings, store, runner, backlog, sender, PhotoPruner(store, settings)))
    register_error_handlers(app)
    cors.register(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.wsgi_app = JobPolls(app)  # type: ignore[method-assign]
    return app


def prepare(app: Flask) -> None:
    """The start-up work on the data, before the app answers its first request: upload
    folders and backup copies left by a killed server are removed, and an empty catalog is
    seeded (so matching works out of the box). Once per app, before any request: a later call
    could remove the upload folder of a request under way."""
    svc = services_of(app)
    # Holding the store means no other server runs on this data: any upload folder is
    # left over from one that was killed mid-request.
    remove_abandoned_staging(svc.settings.jobs_dir)
    remove_abandoned_backups(svc.settings.data_dir)
    seed_catalog_if_empty(svc.store, svc.settings.seed_catalog)


def start(app: Flask) -> None:
    """Start processing: the runner resumes the jobs a previous server left unfinished, warms
    its kernels and takes jobs from now on; the backlog follows its Google batches; completion
    webhooks left due are sent; with SCANBATCH_KEEP_PHOTOS_DAYS, old photos are pruned."""
    svc = services_of(app)
    svc.runner.start()
    svc.backlog.start()
    svc.webhooks.start()
    svc.pruner.start()


def shutdown(app: Flask) -> None:
    svc = services_of(app)
    svc.pruner.stop()
    svc.backlog.stop()
    svc.webhooks.stop()
    svc.runner.stop()
    svc.store.close()
