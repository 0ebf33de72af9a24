"""The library catalog in the store, as its owner reads and seeds it: album look-ups and
search (scanbatch.catalog.lookup), the signature and export of the kernel's snapshot, the
seed import. The SQL of the catalog lives in scanbatch.catalog; this is its seat on the
store's connection."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from scanbatch.catalog.lookup import matched_albums, search_albums
from scanbatch.catalog.snapshot import export_snapshot
from scanbatch.models import MatchedAlbum
from scanbatch.store.db import Database

if TYPE_CHECKING:
    from scanbatch.catalog.importer import ImportSummary


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def albums(self, album_ids: Iterable[int | None]) -> dict[int, MatchedAlbum]:
        """The `matchedAlbum` of each known id; None and unknown ids are left out."""
        with self.db.read() as cur:
            return matched_albums(cur, album_ids)

    def album(self, album_id: int) -> MatchedAlbum | None:
        return self.albums([album_id]).get(album_id)

    def search(self, words: list[str], limit: int) -> list[MatchedAlbum]:
        """Albums whose artist and title hold every one of `words`, at most `limit`."""
        with self.db.read() as cur:
            return search_albums(cur, words, limit)

    def signature(self) -> tuple[int, object, int]:
        """(albums, their last update, artists): changes whenever the catalog does."""
        with self.db.read() as cur:
            return cur.execute(
                "SELECT (SELECT count(*) FROM catalog_albums), "
                "(SELECT max(updated_at) FROM catalog_albums), "
                "(SELECT count(*) FROM catalog_artists)"
            ).fetchone()

    def stats(self) -> tuple[int, int, list[tuple[str, int]]]:
        """(artists, albums, [(genre, albums)] most albums first): what `scanbatch catalog
        stats` prints."""
        with self.db.read() as cur:
            artists, albums = cur.execute(
                "SELECT (SELECT count(*) FROM catalog_artists), "
                "(SELECT count(*) FROM catalog_albums)"
            ).fetchone()
            genres = cur.execute(
                "SELECT coalesce(genre, '(none)'), count(*) AS n FROM catalog_albums "
                "GROUP BY 1 ORDER BY n DESC, 1"
            ).fetchall()
        return artists, albums, genres

    def is_empty(self) -> bool:
        with self.db.read() as cur:
            return not cur.execute("SELECT count(*) FROM catalog_albums").fetchone()[0]

    def export_snapshot(self, path: Path) -> None:
        """Write the Parquet snapshot the kernel matches against (atomically replaced)."""
        with self.db.read() as cur:
            export_snapshot(cur, path)

    def import_csv(self, csv_path: Path) -> ImportSummary:
        # Imported here, on use: the importer pulls in pandas, which only an import needs.
        from scanbatch.catalog.importer import import_csv

        with self.db.write() as cur:
            return import_csv(cur, csv_path, own_transaction=False)
