"""What one app serves with (`Services`: the settings, the store, the runner) and the one way
to reach it: `services()` inside a request, `services_of(app)` for code that holds the app
(the WSGI middleware in front of Flask, `scanbatch serve`). Only the factory attaches it
(`scanbatch.web.create_app`).

This module imports nothing else of `scanbatch.web`, so every web module can import it."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app

from scanbatch.runner import JobRunner
from scanbatch.settings import Settings
from scanbatch.store import JobStore

_EXTENSION = "scanbatch"


@dataclass
class Services:
    settings: Settings
    store: JobStore
    runner: JobRunner
    submit_lock: threading.Lock = field(default_factory=threading.Lock)
    # A per-process stationManager token for the local CLI (`scanbatch keys` while the server
    # holds the store); `scanbatch serve` writes it to a file only the data dir's owner reads.
    admin_token: str = field(default_factory=lambda: "sb_local_" + secrets.token_urlsafe(32))

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
