"""The HTTP façade: `create_app(settings)` builds the Flask app that owns the job store."""

from __future__ import annotations

import threading

from flask import Flask

from scanbatch.catalog_sync import seed_catalog_if_empty
from scanbatch.extractors import create_extractor
from scanbatch.runner import JobRunner
from scanbatch.settings import Settings, load_settings
from scanbatch.store import JobStore
from scanbatch.web import batch, keys, meta, review, scan
from scanbatch.web.errors import register_error_handlers
from scanbatch.web.polls import JobPolls
from scanbatch.web.uploads import (
    MAX_FORM_FIELD_BYTES,
    MAX_FORM_PARTS,
    MAX_REQUEST_BYTES,
    UploadRequest,
    remove_abandoned_staging,
)

# One line per blueprint; each documents its own routes (scanbatch.web.openapi.operation).
BLUEPRINTS = [batch.bp, scan.bp, review.bp, keys.bp, meta.bp]


def create_app(settings: Settings | None = None, *, start_runner: bool = True) -> Flask:
    settings = settings or load_settings()
    # A misconfigured extractor (e.g. gemini without GEMINI_API_KEY) stops the server here,
    # before it accepts a batch it could not process.
    create_extractor(settings.extractor, settings)
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD_BYTES
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.json.sort_keys = False
    store = JobStore.open(settings.store_path)
    # Holding the store means no other server runs on this data: any upload folder is
    # left over from one that was killed mid-request.
    remove_abandoned_staging(settings.jobs_dir)
    seed_catalog_if_empty(store, settings.seed_catalog)
    runner = JobRunner(store, settings)
    app.extensions["scanbatch"] = batch.Services(settings, store, runner, threading.Lock())
    register_error_handlers(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.wsgi_app = JobPolls(app)  # type: ignore[method-assign]
    if start_runner:
        runner.start()
    return app


def shutdown(app: Flask) -> None:
    svc = app.extensions["scanbatch"]
    svc.runner.stop()
    svc.store.close()
