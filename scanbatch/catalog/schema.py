"""The catalog's tables and the view the API hydrates `matchedAlbum` from.

Applied by the store as migration #2 (append-only, once, inside a transaction).

There is deliberately no FOREIGN KEY from `catalog_albums.artist_id` to `catalog_artists.id`:
in DuckDB 2.0 a referenced parent cannot have indexed columns updated, deletes cannot cascade,
and deleting an artist orphaned earlier in the same import transaction trips the constraint
check. The importer is the only writer and keeps the two tables consistent itself (it resolves
every album's artist before writing and removes artists left without albums).
"""

from __future__ import annotations

CATALOG_MIGRATION_SQL = """
CREATE TABLE catalog_artists (
    id INTEGER PRIMARY KEY,
    -- identity used by re-imports: 'code:<LETTERS>-<number>' when the library code is known,
    -- else 'name:<normalised name>'
    artist_key VARCHAR NOT NULL UNIQUE,
    name VARCHAR NOT NULL,
    code_letters VARCHAR,
    code_artist_number INTEGER
);
CREATE TABLE catalog_albums (
    id INTEGER PRIMARY KEY,  -- the station's catalog item id (the app's catalogItemId)
    artist_id INTEGER NOT NULL,
    title VARCHAR NOT NULL,
    label VARCHAR,
    code_number INTEGER,
    genre VARCHAR,
    format VARCHAR,
    added_on DATE,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE VIEW catalog_matched_album AS
SELECT
    al.id AS id,
    ar.name AS artist_name,
    al.title AS album_title,
    ar.code_letters AS code_letters,
    ar.code_artist_number AS code_artist_number,
    al.code_number AS code_number,
    al.genre AS genre_name,
    al.format AS format_name,
    al.label AS label
FROM catalog_albums AS al
JOIN catalog_artists AS ar ON ar.id = al.artist_id;
"""

VIEW = "catalog_matched_album"
VIEW_COLUMNS = (
    "id",
    "artist_name",
    "album_title",
    "code_letters",
    "code_artist_number",
    "code_number",
    "genre_name",
    "format_name",
    "label",
)
