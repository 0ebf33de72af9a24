"""The synthetic set: files, manifest and truth agree; a seed gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from scanbatch.cli import cli
from scanbatch.errors import BadRequest
from scanbatch.images import EXTENSIONS, sniff_mime
from scanbatch.models import DatasetManifest
from scanbatch.synth import generate_set
from scanbatch.synth.records import BUILTIN, draw_records, load_catalog

N_ITEMS = 4  # item 2 always has a HEIC photo; 4 items guarantee one not in the catalog


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("set") / "a"
    generate_set(out, N_ITEMS, seed=11, workers=1)
    return out


def test_manifest_is_accepted_and_matches_files(synth_set: Path) -> None:
    manifest = DatasetManifest.model_validate_json((synth_set / "manifest.json").read_text())
    photos = sorted(p for p in synth_set.iterdir() if p.suffix in (".jpg", ".heic"))
    assert len(manifest.items) == N_ITEMS
    assert manifest.total_images == len(photos)
    # Files sort in upload order: item by item, position by position.
    expected = [
        f"item{i:02d}_{pos}_{t}"
        for i, item in enumerate(manifest.items)
        for pos, t in enumerate(item.photo_types)
    ]
    assert [p.stem for p in photos] == expected
    for item in manifest.items:
        assert 1 <= item.image_count <= 5 and len(item.photo_types) == item.image_count
    mimes = {sniff_mime(p.read_bytes(), index=None) for p in photos}
    assert "image/heic" in mimes and "image/jpeg" in mimes
    for p in photos:
        assert EXTENSIONS[sniff_mime(p.read_bytes(), index=None)] in (".jpg", ".heic")


def test_photos_are_phone_sized(synth_set: Path) -> None:
    from scanbatch.images import register_heif

    register_heif()
    for p in synth_set.glob("item*"):
        with Image.open(p) as im:
            assert 1000 <= max(im.size) <= 1400, p.name


def test_truth_lists_fields_and_photos(synth_set: Path) -> None:
    truth = json.loads((synth_set / "truth.json").read_text())
    items = truth["items"]
    assert [t["itemIndex"] for t in items] == list(range(N_ITEMS))
    assert any(t["albumId"] is None for t in items)  # some records are not in the catalog
    for t in items:
        assert t["artistName"] and t["albumTitle"]  # every item has its front cover
        assert all((synth_set / f).is_file() for f in t["photos"])
        assert re.fullmatch(r"[A-Z0-9]{1,4} \d+/\d+", t["libraryCode"])
        assert t["catalogNumber"] != t["libraryCode"]
        # A field is in the truth exactly when a photo shows it.
        assert (t["upc"] is not None) == ("back_cover" in t["kinds"])
        assert (t["reviewText"] is not None) == ("sticker" in t["kinds"])
        if t["upc"]:
            assert t["upc"].isdigit() and len(t["upc"]) in (12, 13)


def test_same_seed_same_bytes_through_the_cli(synth_set: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["synth", "--items", str(N_ITEMS), "--seed", "11",
                                       "--workers", "1", str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _digest(tmp_path / "b") == _digest(synth_set)


def test_bad_item_count_exits_2() -> None:
    result = CliRunner().invoke(cli, ["synth", "--items", "0", "out"])
    assert result.exit_code == 2
    assert "x>=1" in result.stderr and "--items" in result.stderr


def test_other_seed_other_records() -> None:
    a = draw_records(list(BUILTIN), 10, np.random.default_rng(1))
    b = draw_records(list(BUILTIN), 10, np.random.default_rng(2))
    assert [r.title for r in a] != [r.title for r in b]


def test_records_come_from_the_catalog_csv(tmp_path: Path) -> None:
    csv = tmp_path / "cat.csv"
    csv.write_text(
        "id,artistName,albumTitle,label,codeLetters,codeArtistNumber,codeNumber\n"
        "101,Low,Trust,Kranky,LO,6,7\n"
        "102,Slint,Tweez,Touch and Go,SL,1,1\n"
        "103,Wipers,Over the Edge,Brain Eater,WI,1,3\n"
    )
    rows = load_catalog(csv)
    records = draw_records(rows, 8, np.random.default_rng(3))
    ids = [r.album_id for r in records]
    assert {i for i in ids if i is not None} <= {101, 102, 103}
    assert ids.count(None) == 1  # 8 * 12% rounds to 1
    low = next(r for r in records if r.album_id == 101)
    assert low.library_code == "LO 6/7" and low.catalog_number.startswith("KRANK ")


def test_catalog_without_required_columns_is_a_bad_request(tmp_path: Path) -> None:
    csv = tmp_path / "cat.csv"
    csv.write_text("name,year\nLow,1999\n")
    with pytest.raises(BadRequest, match=r"cat\.csv lacks column\(s\) for album_id, artist"):
        load_catalog(csv)
    with pytest.raises(BadRequest, match="does not exist"):
        generate_set(tmp_path / "o", 1, 0, catalog_csv=tmp_path / "missing.csv")


def test_unknown_difficulty_is_a_bad_request(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="difficulty must be one of easy, default, hard"):
        generate_set(tmp_path, 1, 0, difficulty="brutal")


def test_shipped_sample_is_complete() -> None:
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    manifest = DatasetManifest.model_validate_json((sample / "manifest.json").read_text())
    truth = json.loads((sample / "truth.json").read_text())
    photos = [p for p in sample.iterdir() if p.name.startswith("item")]
    assert len(manifest.items) == len(truth["items"]) == 8
    assert manifest.total_images == len(photos)
    assert sum(p.stat().st_size for p in sample.iterdir()) < 3_000_000
    assert any(p.suffix == ".heic" for p in photos)
