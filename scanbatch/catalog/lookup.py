"""Albums as the server shows them (`matchedAlbum`, from the catalog view): by id, and found by
words of their artist and title."""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from scanbatch.catalog.schema import VIEW, VIEW_COLUMNS
from scanbatch.models import MatchedAlbum

_SELECT = f"SELECT {', '.join(VIEW_COLUMNS)} FROM {VIEW}"


def _album(row: tuple) -> MatchedAlbum:
    return MatchedAlbum(**dict(zip(VIEW_COLUMNS, row, strict=True)))


def matched_albums(
    con: duckdb.DuckDBPyConnection, album_ids: Iterable[int | None]
) -> dict[int, MatchedAlbum]:
    """The hydrated `matchedAlbum` of each known id (None and unknown ids are left out). Only
    these rows are read: joining the whole view would scan every album on every poll."""
    ids = sorted({i for i in album_ids if i is not None})
    if not ids:
        return {}
    rows = con.execute(
        f"{_SELECT} WHERE id IN (SELECT unnest(?::INTEGER[]))",
        [ids],
    ).fetchall()
    return {r[0]: _album(r) for r in rows}


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_albums(
    con: duckdb.DuckDBPyConnection, words: list[str], limit: int
) -> list[MatchedAlbum]:
    """Albums with every word somewhere in "artist title" (case-insensitive; "miles kind"
    finds Miles Davis, Kind of Blue), by artist, title and id; at most `limit`."""
    if not words:
        return []
    where = " AND ".join(["(artist_name || ' ' || album_title) ILIKE ? ESCAPE '\\'"] * len(words))
    rows = con.execute(
        f"{_SELECT} WHERE {where} ORDER BY artist_name, album_title, id LIMIT ?",
        [*(f"%{_like_escape(w)}%" for w in words), limit],
    ).fetchall()
    return [_album(r) for r in rows]
