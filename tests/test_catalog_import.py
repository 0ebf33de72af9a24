"""CSV import into a real DuckDB file: good file, bad rows, bad headers, re-import, updates."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from scanbatch.catalog import CATALOG_MIGRATION_SQL, VIEW_COLUMNS, import_csv, matched_albums
from scanbatch.errors import BadRequest
from scanbatch.models import MatchedAlbum
from scanbatch.settings import SHIPPED_DATA

HEADER = (
    "album_id,artist,title,code_letters,code_artist_number,code_number,label,genre,format,added"
)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    for statement in CATALOG_MIGRATION_SQL.split(";"):
        if statement.strip():
            con.execute(statement)
    yield con
    con.close()


def write(tmp_path: Path, *lines: str, name: str = "cat.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_sample_catalog_imports_cleanly_and_reimport_changes_nothing(con, tmp_path):
    sample = SHIPPED_DATA / "catalog_sample.csv"
    first = import_csv(con, sample)
    assert (first.added, first.updated, first.rejected) == (400, 0, 0)
    before = con.execute("SELECT * FROM catalog_albums ORDER BY id").fetchall()
    second = import_csv(con, sample)
    assert (second.added, second.updated, second.unchanged, second.rejected) == (0, 0, 400, 0)
    assert con.execute("SELECT * FROM catalog_albums ORDER BY id").fetchall() == before
    assert count(con, "catalog_matched_album") == 400


def test_view_has_the_matched_album_shape(con, tmp_path):
    path = write(
        tmp_path,
        HEADER,
        "17,The Byrds,Mr. Tambourine Man,BYR,1,3,Columbia,Rock,LP,1999-04-01",
        '18,Björk,Début,BJO,1,1,One Little Indian,Electronic,"12""",',
    )
    import_csv(con, path)
    cols = [d[0] for d in con.execute("SELECT * FROM catalog_matched_album").description]
    assert tuple(cols) == VIEW_COLUMNS
    album = matched_albums(con, [18])[18]
    assert album == MatchedAlbum(
        id=18, artist_name="Björk", album_title="Début", code_letters="BJO",
        code_artist_number=1, code_number=1, genre_name="Electronic", format_name='12"',
        label="One Little Indian",
    )  # fmt: skip
    assert album.to_json_dict()["codeArtistNumber"] == 1
    assert matched_albums(con, [999, None]) == {}


def test_bad_rows_are_rejected_with_their_line_and_the_rest_imported(con, tmp_path):
    path = write(
        tmp_path,
        HEADER,
        "1,Alpha,First,ALP,1,1,L,Rock,LP,2001-01-01",
        "x,Beta,Second,BET,1,1,L,Rock,LP,2001-01-01",  # line 3: album_id not an integer
        "3,,Third,,,,,,,",  # line 4: empty artist
        '4,Gamma,"Multi',  # line 5..6: a quoted title spanning two lines is fine
        'line",GAM,1,1,L,Rock,LP,2001-01-01',
        "1,Delta,Dup,DEL,1,1,L,Rock,LP,2001-01-01",  # line 7: duplicate album_id
        "5,Eps,T,EPS,1,1,L,Rock,LP,2001-13-01",  # line 8: bad date
        "6,Zeta,T,ZET,,1,L,Rock,LP,",  # line 9: half a code
        "7,Other Name,T,ALP,1,1,L,Rock,LP,",  # line 10: code ALP 1 is Alpha
        "8,Eta,T",  # line 11: wrong number of fields
    )
    summary = import_csv(con, path)
    assert summary.added == 2
    assert summary.rejected == 7
    lines = [line for line, _ in summary.errors]
    assert lines == [3, 4, 7, 8, 9, 10, 11]
    messages = dict(summary.errors)
    assert "album_id must be an integer" in messages[3]
    assert "artist is empty" in messages[4]
    assert "already on line 2" in messages[7]
    assert "YYYY-MM-DD" in messages[8]
    assert "both code_letters and code_artist_number" in messages[9]
    assert "'Alpha'" in messages[10]
    assert "expected 10 fields" in messages[11]
    assert con.execute("SELECT title FROM catalog_albums WHERE id = 4").fetchone() == (
        "Multi\nline",
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("album_id,artist,title,colour", "unknown column 'colour'"),
        ("album_id,artist,label", "missing required column 'title'"),
        ("album_id,artist,title,title", "'title' appears twice"),
    ],
)
def test_bad_header_raises_bad_request_naming_the_column(con, tmp_path, header, expected):
    path = write(tmp_path, header, "1,A,B,C")
    with pytest.raises(BadRequest, match=expected):
        import_csv(con, path)
    assert count(con, "catalog_albums") == 0


def test_empty_file_and_header_case(con, tmp_path):
    with pytest.raises(BadRequest, match="empty"):
        import_csv(con, write(tmp_path, "", name="empty.csv"))
    # Header names are case-insensitive, optional columns may be left out, a BOM is accepted.
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffAlbum_ID, Artist ,TITLE\n9,Solo,Record\n", encoding="utf-8")
    assert import_csv(con, path).added == 1
    row = con.execute("SELECT artist_name, code_letters FROM catalog_matched_album").fetchone()
    assert row == ("Solo", None)


def test_reimport_updates_changed_rows_and_moves_albums(con, tmp_path):
    import_csv(
        con,
        write(
            tmp_path,
            HEADER,
            "1,Alpha,First,ALP,1,1,L,Rock,LP,2001-01-01",
            "2,Alpha,Second,ALP,1,2,L,Rock,LP,2001-01-02",
            "3,Beta,Third,BET,1,1,L,Jazz,CD,2001-01-03",
        ),
    )
    summary = import_csv(
        con,
        write(
            tmp_path,
            HEADER,
            "1,Alpha,First,ALP,1,1,L,Rock,LP,2001-01-01",  # unchanged
            "2,Alpha,Second (Deluxe),ALP,1,2,L,Rock,LP,2001-01-02",  # title changed
            "3,Gamma,Third,GAM,1,1,L,Jazz,CD,2001-01-03",  # moved to a new artist
            "4,Alpha,Fourth,ALP,1,3,L,Rock,LP,2001-01-04",  # new
            name="v2.csv",
        ),
    )
    assert (summary.added, summary.updated, summary.unchanged) == (1, 2, 1)
    view = dict(
        con.execute(
            "SELECT id, artist_name || ' / ' || album_title FROM catalog_matched_album"
        ).fetchall()
    )
    assert view == {
        1: "Alpha / First",
        2: "Alpha / Second (Deluxe)",
        3: "Gamma / Third",
        4: "Alpha / Fourth",
    }
    # Beta has no album left: the importer removed it (there is no FK to do it for us).
    assert con.execute("SELECT name FROM catalog_artists ORDER BY name").fetchall() == [
        ("Alpha",),
        ("Gamma",),
    ]
    # Renaming an artist (same code) updates every album of it, and then nothing.
    rename = write(tmp_path, HEADER, "1,Alpha!,First,ALP,1,1,L,Rock,LP,2001-01-01", name="r.csv")
    assert import_csv(con, rename).updated == 1
    assert import_csv(con, rename).unchanged == 1
    assert matched_albums(con, [4])[4].artist_name == "Alpha!"


def test_failed_write_rolls_back_everything(con, tmp_path, monkeypatch):
    from scanbatch.catalog import importer

    def boom(*args, **kwargs):
        raise duckdb.Error("disk on fire")

    monkeypatch.setattr(importer, "_update", boom)
    import_csv(con, write(tmp_path, HEADER, "1,A,T,AAA,1,1,L,Rock,LP,2001-01-01"))
    path = write(
        tmp_path,
        HEADER,
        "1,A,T2,AAA,1,1,L,Rock,LP,2001-01-01",  # an update: calls the failing _update
        "2,B,U,BBB,1,1,L,Rock,LP,2001-01-01",  # an insert before it, which must not survive
        name="two.csv",
    )
    with pytest.raises(duckdb.Error, match="disk on fire"):
        import_csv(con, path)
    assert count(con, "catalog_albums") == 1
    assert con.execute("SELECT title FROM catalog_albums").fetchone() == ("T",)
