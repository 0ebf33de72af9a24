"""What one app serves with (`Services`: the settings, the store, the runner, the completion
webhooks' sender, the photo retention's pruner, the single scan's extractor, the export slots)
and the one way to reach it: `services()` inside a request, `services_of(app)` for code that
holds the app (the WSGI middleware in front of Flask, `scanbatch serve`). Only the factory
attaches it (`scanbatch.web.create_app`).

This module imports nothing else of `scanbatch.web`, so every web module can import it."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app

from scanbatch.backlog.engine import Backlog
from scanbatch.extractors import Extractor, create_extractor
from scanbatch.retention import PhotoPruner
from scanbatch.runner import JobRunner
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.tickets import TicketBook
from scanbatch.webhooks import WebhookSender

_EXTENSION = "scanbatch"
# Golden-set exports streamed at once: each holds a server thread for its whole zip.
MAX_EXPORTS = 2


class Scanner:
    """What `POST /library/scan` runs on: one extractor per app (the OCR one loads its models
    once) and a bound on concurrent scans: each holds an extractor call, and the server's
    kernels need the CPU too."""

    def __init__(self, app_settings: Settings) -> None:
        self.settings = app_settings
        self._extractor: Extractor | None = None
        self._lock = threading.Lock()
        workers = max(2, app_settings.runner_workers)
        self.slots = threading.BoundedSemaphore(workers)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan")

    def extractor(self) -> Extractor:
        with self._lock:
            if self._extractor is None:
                self._extractor = create_extractor(self.settings.extractor, self.settings)
            return self._extractor


@dataclass
class Services:
    settings: Settings
    store: JobStore
    runner: JobRunner
    backlog: Backlog
    webhooks: WebhookSender
    pruner: PhotoPruner
    submit_lock: threading.Lock = field(default_factory=threading.Lock)
    # A per-process stationManager token for the local CLI (`scanbatch keys` while the server
    # holds the store); `scanbatch serve` writes it to a file only the data dir's owner reads.
    admin_token: str = field(default_factory=lambda: "sb_local_" + secrets.token_urlsafe(32))
    tickets: TicketBook = field(default_factory=TicketBook)
    export_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_EXPORTS)
    )
    _scanner: Scanner | None = field(default=None, init=False, repr=False)
    _scanner_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def scanner(self) -> Scanner:
        """The single scan's extractor and slots, made on first use (most servers never get
        a single scan)."""
        with self._scanner_lock:
            if self._scanner is None:
                self._scanner = Scanner(self.settings)
            return self._scanner

    def catalog_snapshot(self) -> Path | None:
        """The Parquet catalog the matcher reads (exported first if the catalog changed), None
        for an empty catalog. The runner keeps it for its kernels; a view asks here."""
        return self.runner.snapshot.ensure()


def attach(app: Flask, svc: Services) -> None:
    """Give `app` its services: the factory's step, once per app."""
    if _EXTENSION in app.extensions:
        raise RuntimeError("this app has its services already")
    app.extensions[_EXTENSION] = svc


def services_of(app: Flask) -> Services:
    return app.extensions[_EXTENSION]


def services() -> Services:
    """The services of the app handling the current request."""
    return services_of(current_app)
