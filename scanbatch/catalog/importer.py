"""Import the library catalog from CSV.

File format: UTF-8 (a BOM is accepted), comma-separated, RFC 4180 quoting, one header line.
Header names are case-insensitive; columns may come in any order.

=====================  ========  ==========================================================
column                 required  meaning
=====================  ========  ==========================================================
album_id               yes       the station's catalog item id (integer > 0); the app sends
                                 it as ``catalogItemId``. Unique in the file.
artist                 yes       artist name as displayed ("The Byrds", "Björk").
title                  yes       album title.
code_letters           no        library code letters, 1-4 of A-Z/0-9 ("BYR").
code_artist_number     no        artist number within those letters (integer > 0); give both
                                 code columns or neither.
code_number            no        album number within the artist (integer > 0).
label                  no        record label.
genre                  no        genre name ("Rock", "Hip-Hop").
format                 no        format name ("LP", '7"', "CD").
added                  no        date the album entered the library, YYYY-MM-DD; when empty
                                 a new album gets the import date and an existing one keeps
                                 its date.
=====================  ========  ==========================================================

An artist is identified by its code (letters + number) when given, else by its normalised name;
an album by `album_id`. Importing upserts: new albums are added, changed ones updated, albums
absent from the file are kept. Importing the same file twice changes nothing the second time.
A bad row is rejected with its line number; the other rows are still imported.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from scanbatch.catalog.generate import CSV_COLUMNS
from scanbatch.catalog.normalize import normalize
from scanbatch.errors import BadRequest

REQUIRED = ("album_id", "artist", "title")
_CODE_LETTERS = re.compile(r"^[A-Z0-9]{1,4}$")
_ALBUM_FIELDS = ("artist_id", "title", "label", "code_number", "genre", "format", "added_on")


@dataclass
class ImportSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.rejected} rejected"
        )


@dataclass(frozen=True)
class _Row:
    line: int
    album_id: int
    artist: str
    title: str
    code_letters: str | None
    code_artist_number: int | None
    code_number: int | None
    label: str | None
    genre: str | None
    format: str | None
    added: date | None

    @property
    def artist_key(self) -> str:
        if self.code_letters is not None:
            return f"code:{self.code_letters}-{self.code_artist_number}"
        return f"name:{normalize(self.artist) or self.artist.strip().casefold()}"


def _positive_int(value: str, column: str) -> int | None:
    if value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{column} must be an integer, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{column} must be > 0, got {number}")
    return number


def _parse_row(line: int, raw: dict[str, str]) -> _Row:
    cell = {k: (v or "").strip() for k, v in raw.items()}
    album_id = _positive_int(cell["album_id"], "album_id")
    if album_id is None:
        raise ValueError("album_id is empty")
    for column in ("artist", "title"):
        if not cell[column]:
            raise ValueError(f"{column} is empty")
    letters = cell.get("code_letters", "").upper() or None
    artist_number = _positive_int(cell.get("code_artist_number", ""), "code_artist_number")
    if letters is not None and not _CODE_LETTERS.match(letters):
        raise ValueError(f"code_letters must be 1-4 letters or digits, got {letters!r}")
    if (letters is None) != (artist_number is None):
        raise ValueError("give both code_letters and code_artist_number, or neither")
    added = None
    if cell.get("added"):
        try:
            added = date.fromisoformat(cell["added"])
        except ValueError:
            raise ValueError(f"added must be a date YYYY-MM-DD, got {cell['added']!r}") from None
    return _Row(
        line=line,
        album_id=album_id,
        artist=cell["artist"],
        title=cell["title"],
        code_letters=letters,
        code_artist_number=artist_number,
        code_number=_positive_int(cell.get("code_number", ""), "code_number"),
        label=cell.get("label") or None,
        genre=cell.get("genre") or None,
        format=cell.get("format") or None,
        added=added,
    )


def check_header(header: list[str], source: str = "CSV") -> list[str]:
    """The header's column names, normalised; BadRequest naming what is missing or unknown."""
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in CSV_COLUMNS]
    if unknown:
        raise BadRequest(
            f"{source}: unknown column {unknown[0]!r} in the header; "
            f"expected columns: {', '.join(CSV_COLUMNS)}"
        )
    duplicated = sorted({h for h in names if names.count(h) > 1})
    if duplicated:
        raise BadRequest(f"{source}: column {duplicated[0]!r} appears twice in the header")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise BadRequest(
            f"{source}: missing required column {missing[0]!r} in the header "
            f"(required: {', '.join(REQUIRED)})"
        )
    return names


def parse_csv(text: str, source: str = "CSV") -> tuple[list[_Row], ImportSummary, set[str]]:
    """Parse and validate every row: (good rows, summary holding the rejections, columns)."""
    summary = ImportSummary()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BadRequest(f"{source}: the file is empty; expected a header line") from None
    except csv.Error as exc:
        raise BadRequest(f"{source}: unreadable header: {exc}") from None
    names = check_header(header, source)
    rows: list[_Row] = []
    seen_ids: dict[int, int] = {}
    seen_codes: dict[str, tuple[str, int]] = {}  # artist_key -> (name, line)
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            summary.errors.append((line, f"unreadable row: {exc}"))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1  # a quoted field may span lines
        if not any(v.strip() for v in values):
            continue
        try:
            if len(values) != len(names):
                raise ValueError(f"expected {len(names)} fields, got {len(values)}")
            row = _parse_row(start, dict(zip(names, values, strict=True)))
            if row.album_id in seen_ids:
                raise ValueError(
                    f"album_id {row.album_id} already on line {seen_ids[row.album_id]}"
                )
            key = row.artist_key
            if key.startswith("code:") and key in seen_codes and seen_codes[key][0] != row.artist:
                name, other = seen_codes[key]
                raise ValueError(
                    f"artist code {row.code_letters} {row.code_artist_number} is {name!r} "
                    f"on line {other}, not {row.artist!r}"
                )
        except ValueError as exc:
            summary.errors.append((start, str(exc)))
            continue
        seen_ids[row.album_id] = start
        seen_codes.setdefault(key, (row.artist, start))
        rows.append(row)
    summary.rejected = len(summary.errors)
    return rows, summary, set(names)


def import_csv(
    con: duckdb.DuckDBPyConnection, path: Path | str, *, own_transaction: bool = True
) -> ImportSummary:
    """Upsert the CSV at `path` into the catalog tables; see the module docstring for the format.

    With `own_transaction` (the default) the writes run in one BEGIN/COMMIT, rolled back on any
    error; pass False when the caller already holds a transaction (the store's `write()`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise BadRequest(f"{path}: cannot read the file: {exc.strerror}") from None
    rows, summary, columns = parse_csv(text, str(path))
    if own_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        _write(con, rows, summary, columns)
        if own_transaction:
            con.execute("COMMIT")
    except BaseException:
        if own_transaction:
            con.execute("ROLLBACK")
        raise
    return summary


def _write(
    con: duckdb.DuckDBPyConnection, rows: list[_Row], summary: ImportSummary, columns: set[str]
) -> None:
    artists = {
        key: (artist_id, name, letters, number)
        for artist_id, key, name, letters, number in con.execute(
            "SELECT id, artist_key, name, code_letters, code_artist_number FROM catalog_artists"
        ).fetchall()
    }
    albums = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT id, artist_id, title, label, code_number, genre, format, added_on "
            "FROM catalog_albums"
        ).fetchall()
    }
    next_artist = max((a[0] for a in artists.values()), default=0) + 1
    new_artists, changed_artists = [], []
    artist_ids: dict[str, int] = {}
    changed_artist_ids: set[int] = set()
    for row in rows:
        key = row.artist_key
        if key in artist_ids:
            continue
        wanted = (row.artist, row.code_letters, row.code_artist_number)
        if key in artists:
            artist_id, *current = artists[key]
            if tuple(current) != wanted:
                changed_artists.append((artist_id, *wanted))
                changed_artist_ids.add(artist_id)
        else:
            artist_id = next_artist
            next_artist += 1
            new_artists.append((artist_id, key, *wanted))
        artist_ids[key] = artist_id

    today = date.today()
    keep_date = "added" not in columns
    new_albums, changed_albums = [], []
    for row in rows:
        artist_id = artist_ids[row.artist_key]
        current = albums.get(row.album_id)
        added = row.added
        if added is None or keep_date:
            added = current[-1] if current is not None else today
        wanted = (artist_id, row.title, row.label, row.code_number, row.genre, row.format, added)
        if current is None:
            new_albums.append((row.album_id, *wanted))
            summary.added += 1
        elif tuple(current) != wanted:
            changed_albums.append((row.album_id, *wanted))
            summary.updated += 1
        elif artist_id in changed_artist_ids:
            summary.updated += 1  # the album row is the same but its artist was renamed
        else:
            summary.unchanged += 1

    artist_cols = ["id", "artist_key", "name", "code_letters", "code_artist_number"]
    if new_artists:
        _insert(con, "catalog_artists", artist_cols, new_artists)
    if changed_artists:
        _update(con, "catalog_artists", ["id", *artist_cols[2:]], changed_artists)
    album_cols = ["id", *_ALBUM_FIELDS]
    if new_albums:
        _insert(con, "catalog_albums", album_cols, new_albums)
    if changed_albums:
        _update(con, "catalog_albums", album_cols, changed_albums, touch="updated_at")
    if changed_albums:
        # An album moved to another artist (re-coded or renamed) may leave an empty artist.
        con.execute(
            "DELETE FROM catalog_artists WHERE id NOT IN (SELECT artist_id FROM catalog_albums)"
        )


_INT_COLUMNS = {"id", "artist_id", "code_artist_number", "code_number"}


def _frame(columns: list[str], values: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(values, columns=columns)
    for column in columns:
        if column in _INT_COLUMNS:
            frame[column] = frame[column].astype("Int64")  # keeps NULLs as NULL, not NaN floats
        elif column == "added_on":
            frame[column] = pd.to_datetime(frame[column]).dt.date
        else:
            frame[column] = frame[column].astype(object)
    return frame


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], values: list) -> None:
    con.register("_catalog_incoming", _frame(columns, values))
    try:
        cols = ", ".join(columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _catalog_incoming")
    finally:
        con.unregister("_catalog_incoming")


def _update(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    values: list,
    touch: str | None = None,
) -> None:
    """Set every non-key column from the frame; `id` (the primary key) is never updated, which
    DuckDB requires of indexed columns."""
    con.register("_catalog_incoming", _frame(columns, values))
    try:
        sets = [f"{c} = src.{c}" for c in columns if c != "id"]
        if touch:
            sets.append(f"{touch} = current_timestamp")
        con.execute(
            f"UPDATE {table} AS t SET {', '.join(sets)} "
            "FROM _catalog_incoming AS src WHERE t.id = src.id"
        )
    finally:
        con.unregister("_catalog_incoming")
