"""The station's library catalog: DuckDB tables and the `matchedAlbum` view, CSV import, a
synthetic catalog generator, album look-ups and search, the Parquet snapshot the processing
kernel reads, and matching.

Names are imported on first use: the processing kernel needs only matching, and importing
the CSV importer would pull in pandas (about half a second) into every job's start-up."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CATALOG_MIGRATION_SQL": "schema",
    "VIEW": "schema",
    "VIEW_COLUMNS": "schema",
    "CSV_COLUMNS": "generate",
    "code_letters_for": "generate",
    "generate_catalog": "generate",
    "write_csv": "generate",
    "ImportSummary": "importer",
    "import_csv": "importer",
    "DEFAULT_MIN_SCORE": "match",
    "Candidate": "match",
    "CatalogMatcher": "match",
    "LinePair": "match",
    "Matcher": "match",
    "load_matcher": "match",
    "export_snapshot": "snapshot",
    "matched_albums": "lookup",
    "read_snapshot": "snapshot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'scanbatch.catalog' has no attribute '{name}'") from None
    return getattr(importlib.import_module(f"scanbatch.catalog.{module}"), name)
