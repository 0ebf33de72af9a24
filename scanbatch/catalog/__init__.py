"""The station's library catalog: DuckDB tables and the `matchedAlbum` view, CSV import, a
synthetic catalog generator, the Parquet snapshot the processing kernel reads, and matching."""

from scanbatch.catalog.generate import CSV_COLUMNS, code_letters_for, generate_catalog, write_csv
from scanbatch.catalog.importer import ImportSummary, import_csv
from scanbatch.catalog.match import (
    DEFAULT_MIN_SCORE,
    Candidate,
    CatalogMatcher,
    LinePair,
    load_matcher,
)
from scanbatch.catalog.schema import CATALOG_MIGRATION_SQL, VIEW, VIEW_COLUMNS
from scanbatch.catalog.snapshot import export_snapshot, matched_album, read_snapshot

__all__ = [
    "CATALOG_MIGRATION_SQL",
    "CSV_COLUMNS",
    "DEFAULT_MIN_SCORE",
    "VIEW",
    "VIEW_COLUMNS",
    "Candidate",
    "CatalogMatcher",
    "ImportSummary",
    "LinePair",
    "code_letters_for",
    "export_snapshot",
    "generate_catalog",
    "import_csv",
    "load_matcher",
    "matched_album",
    "read_snapshot",
    "write_csv",
]
