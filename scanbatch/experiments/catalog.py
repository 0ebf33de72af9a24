"""The catalog an experiment matches against. Never the server's store: a Parquet snapshot
(read-only file) or a CSV imported into an in-memory DuckDB.

Without an explicit choice: the catalog the dataset names (`scanbatch synth` records the CSV
its records came from), else the server's snapshot when one exists (a golden set's album ids
are the station's), else the shipped sample catalog."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanbatch.errors import BadRequest
from scanbatch.settings import REPO_ROOT, SHIPPED_DATA, Settings

if TYPE_CHECKING:
    from scanbatch.catalog import Matcher

NO_CATALOG = "none"


@dataclass(frozen=True)
class CatalogChoice:
    matcher: Matcher | None  # None for "none"
    source: str
    sha256: str | None

    def describe(self) -> dict[str, Any]:
        size = len(self.matcher) if self.matcher is not None else 0
        return {"source": self.source, "sha256": self.sha256, "albums": size}


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _resolve(name: str | Path) -> Path | None:
    p = Path(name)
    for candidate in (p, REPO_ROOT / p):
        if candidate.is_file():
            return candidate
    return None


def _from_file(path: Path, min_score: float) -> Matcher:
    from scanbatch.catalog import CatalogMatcher

    if path.suffix.lower() == ".parquet":
        return CatalogMatcher.from_parquet(path, min_score)
    if path.suffix.lower() != ".csv":
        raise BadRequest(
            f"catalog {path}: give a catalog CSV (docs/catalog.md) or a Parquet snapshot, "
            f"or '{NO_CATALOG}' to skip matching"
        )
    import duckdb

    from scanbatch.catalog import CATALOG_MIGRATION_SQL, import_csv

    with duckdb.connect(":memory:") as con:
        con.execute(CATALOG_MIGRATION_SQL)
        import_csv(con, path)
        return CatalogMatcher.from_connection(con, min_score)


def choose_catalog(
    settings: Settings,
    catalog: str | Path | None = None,
    dataset_meta: dict[str, Any] | None = None,
) -> CatalogChoice:
    if catalog is not None and str(catalog) == NO_CATALOG:
        return CatalogChoice(None, NO_CATALOG, None)
    if catalog is not None:
        path = _resolve(catalog)
        if path is None:
            raise BadRequest(
                f"catalog {catalog} does not exist: give a catalog CSV or Parquet snapshot, or "
                f"'{NO_CATALOG}' to skip matching"
            )
    else:
        named = (dataset_meta or {}).get("catalog")
        path = _resolve(named) if isinstance(named, str) and named else None
        if path is None and settings.catalog_snapshot.is_file():
            path = settings.catalog_snapshot
        if path is None:
            path = SHIPPED_DATA / "catalog_sample.csv"
    return CatalogChoice(_from_file(path, settings.match_min_score), str(path), _file_hash(path))
