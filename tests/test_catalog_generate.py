"""The synthetic catalog: deterministic, realistic in shape, importable."""

from __future__ import annotations

import io
import re
from collections import Counter

import duckdb

from scanbatch.catalog import (
    CATALOG_MIGRATION_SQL,
    CSV_COLUMNS,
    code_letters_for,
    generate_catalog,
    import_csv,
    write_csv,
)
from scanbatch.catalog.normalize import normalize


def test_same_seed_same_catalog_other_seed_other_catalog():
    assert generate_catalog(2000, 7) == generate_catalog(2000, 7)
    assert generate_catalog(2000, 7) != generate_catalog(2000, 8)
    out_a, out_b = io.StringIO(), io.StringIO()
    write_csv(generate_catalog(300, 3), out_a)
    write_csv(generate_catalog(300, 3), out_b)
    assert out_a.getvalue() == out_b.getvalue()
    assert out_a.getvalue().splitlines()[0] == ",".join(CSV_COLUMNS)


def test_shape_is_realistic():
    rows = generate_catalog(8000, 1)
    assert len(rows) == 8000
    ids = [int(r["album_id"]) for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    per_artist = Counter(r["artist"] for r in rows)
    assert 2.0 < len(rows) / len(per_artist) < 5.0  # several albums per artist
    assert max(per_artist.values()) >= 10
    artists = list(per_artist)
    assert sum(a.startswith("The ") for a in artists) / len(artists) > 0.1
    assert any(re.search(r"[éöüñøł]", a, re.I) for a in artists)
    assert any(re.search(r"\d", a) for a in artists)
    assert any(re.search(r"[&!'-]", a) for a in artists)
    titles = Counter(r["title"] for r in rows)
    assert titles["Greatest Hits"] > 20 and titles["Live"] > 20
    assert sum(r["title"] == r["artist"] for r in rows) > 50  # self-titled
    formats = Counter(r["format"] for r in rows)
    assert formats.most_common(1)[0][0] == "LP"
    assert formats["LP"] / len(rows) > 0.5
    genres = Counter(r["genre"] for r in rows)
    assert genres.most_common(1)[0][0] == "Rock" and len(genres) >= 10
    # Artist names are distinct even after normalisation (else the catalog is ambiguous).
    assert len({normalize(a) for a in artists}) == len(artists)


def test_library_codes_are_consistent():
    rows = generate_catalog(5000, 2)
    codes: dict[tuple[str, str], str] = {}
    numbers: dict[str, list[int]] = {}
    for r in rows:
        code = (r["code_letters"], r["code_artist_number"])
        assert codes.setdefault(code, r["artist"]) == r["artist"]  # one code, one artist
        numbers.setdefault(r["artist"], []).append(int(r["code_number"]))
        assert re.fullmatch(r"[A-Z0-9]{1,3}", r["code_letters"])
    # Album numbers count each artist's albums 1..n in order of arrival.
    assert all(n == list(range(1, len(n) + 1)) for n in numbers.values())


def test_code_letters_follow_library_filing():
    assert code_letters_for("The Byrds") == "BYR"
    assert code_letters_for("Müller") == "MUL"
    assert code_letters_for("Ødegaard") == "ODE"
    assert code_letters_for("A Tribe Called Quest") == "TRI"
    assert code_letters_for("311") == "311"


def test_generated_catalog_imports(tmp_path):
    path = tmp_path / "gen.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(generate_catalog(3000, 5), out)
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute(CATALOG_MIGRATION_SQL)
    summary = import_csv(con, path)
    assert (summary.added, summary.rejected) == (3000, 0)
    assert import_csv(con, path).unchanged == 3000
