"""Keeping the kernel's read-only catalog snapshot in step with the store's catalog.

The processing kernel cannot open the store (one DuckDB process per file), so it matches
against a Parquet copy of the catalog view; the store's owner re-exports it whenever the
catalog's signature (row count, last update) changes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from scanbatch.diskspace import disk_full_guard
from scanbatch.store import JobStore

log = logging.getLogger(__name__)


class CatalogSnapshot:
    def __init__(self, store: JobStore, path: Path) -> None:
        self.store = store
        self.path = Path(path)
        self._signature: tuple | None = None
        self._lock = threading.Lock()

    def ensure(self) -> Path | None:
        """The snapshot's path, exported first if the catalog changed; None for no catalog."""
        with self._lock:
            signature = self.store.catalog.signature()
            if signature[0] == 0:
                return None
            if signature != self._signature or not self.path.exists():
                # A full disk: DiskFull, and the job waits for space (the runner's retry).
                with disk_full_guard(self.path.parent):
                    self.store.catalog.export_snapshot(self.path)
                self._signature = signature
                log.info("catalog snapshot written: %s (%d albums)", self.path, signature[0])
            return self.path


def seed_catalog_if_empty(store: JobStore, csv_path: Path | None) -> int:
    """Import the shipped sample catalog on a fresh store so matching works out of the box."""
    if csv_path is None or not Path(csv_path).exists():
        return 0
    if not store.catalog.is_empty():
        return 0
    summary = store.catalog.import_csv(Path(csv_path))
    log.info("seeded the catalog from %s: %s", csv_path, summary)
    return summary.added
