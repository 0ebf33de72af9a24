"""The `ocr` extractor on photos the synth generator renders and photographs (default
difficulty, fixed seeds), plus a few hand-built images for the cases the generator does not
make on purpose (title above artist, a barcode with a bad check digit, a non-image).

The RapidOCR engine is process-wide and created once (module fixture `extractor`)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from scanbatch.catalog.match import CatalogMatcher
from scanbatch.errors import ExtractionError
from scanbatch.evaluate import normalize
from scanbatch.extractors import create_extractor, get_extractor_class, ocr_engine, ocr_layout
from scanbatch.extractors.ocr import OcrExtractor
from scanbatch.extractors.ocr_engine import BarcodeRead, OcrLine
from scanbatch.models import Photo, ScanContext
from scanbatch.settings import Settings
from scanbatch.synth.barcode import render_barcode
from scanbatch.synth.distort import DIFFICULTIES, encode, photograph
from scanbatch.synth.fonts import FontSpec, render_text
from scanbatch.synth.records import BUILTIN, CatalogRow, make_record
from scanbatch.synth.render import RENDERERS

# Cocteau Twins - Treasure (4AD): a label whose catalog numbers look like "CAD 3X".
ROW = BUILTIN[0]
OUT_ROW = CatalogRow(None, "Lena Okafor", "Morning Static", "Marrow")  # not in the catalog


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _photo(kind: str, rec, seed: int, photo_type: str | None = None) -> Photo:
    """One synth photo of `rec` at the default difficulty (seeded, so the pixels are fixed)."""
    rng = np.random.default_rng([seed, 7])
    art, _ = RENDERERS[kind](rec, rng)
    img = photograph(art, rng, DIFFICULTIES["default"], spin=kind == "center_label")
    return Photo(encode(img, "jpeg", 90), "image/jpeg", photo_type or kind)


def _catalog() -> CatalogMatcher:
    return CatalogMatcher(
        (r.album_id, r.artist, r.title, r.code_letters, r.code_artist_number, r.code_number,
         None, None, r.label)
        for r in BUILTIN
    )  # fmt: skip


def _same(field: str, got: str | None, want: str) -> bool:
    return got is not None and normalize(field, got) == normalize(field, want)


@pytest.fixture(scope="module")
def extractor() -> OcrExtractor:
    ocr_engine.warm_up()
    return OcrExtractor()


@pytest.fixture(scope="module")
def record():
    return make_record(ROW, np.random.default_rng(3))


@pytest.fixture(scope="module")
def full_item(record) -> list[Photo]:
    return [
        _photo("front_cover", record, 1),
        _photo("center_label", record, 2),
        _photo("back_cover", record, 3),
        _photo("sticker", record, 4),
    ]


@pytest.fixture(scope="module")
def full_extraction(extractor, full_item):
    return extractor.extract(full_item, None)


# --- end to end on synth photos ---------------------------------------------------------------


def test_registry_builds_the_ocr_extractor(tmp_path):
    cls = get_extractor_class("ocr")
    assert cls is OcrExtractor
    ex = create_extractor("ocr", Settings(data_dir=tmp_path))  # no snapshot: no catalog needed
    assert isinstance(ex, OcrExtractor) and ex.catalog is None


def test_the_factory_loads_the_catalog_snapshot(tmp_path):
    import duckdb

    from scanbatch.catalog import CATALOG_MIGRATION_SQL, export_snapshot

    con = duckdb.connect(":memory:")
    con.execute(CATALOG_MIGRATION_SQL)
    con.execute(
        "INSERT INTO catalog_artists VALUES (1, 'name:cocteau twins', 'Cocteau Twins', 'CO', 12)"
    )
    con.execute(
        "INSERT INTO catalog_albums (id, artist_id, title, label) VALUES (7, 1, 'Treasure', '4AD')"
    )
    settings = Settings(data_dir=tmp_path)
    export_snapshot(con, settings.catalog_snapshot)
    ex = create_extractor("ocr", settings)
    assert ex.catalog is not None and ex.catalog.get(7)["album_title"] == "Treasure"


def test_clean_photos_give_every_field(full_extraction, record):
    e = full_extraction
    assert _same("artistName", e.value("artist_name"), record.artist)
    assert _same("albumTitle", e.value("album_title"), record.title)
    assert _same("labelName", e.value("label_name"), record.label)
    assert _same("catalogNumber", e.value("catalog_number"), record.catalog_number)
    assert e.value("upc") == record.upc
    review = normalize("reviewText", e.value("review_text"))
    assert review.split()[:2] == normalize("reviewText", record.review_text).split()[:2]
    for name in ("artist_name", "album_title", "label_name", "catalog_number", "upc"):
        assert 0.5 < getattr(e, name).confidence <= 1.0, name


def test_usage_and_audit_trail(full_extraction, full_item):
    usage = full_extraction.usage
    assert usage.extractor == "ocr"
    assert usage.model.startswith("rapidocr-3.") and "+zxing-cpp-" in usage.model
    assert usage.latency_ms > 0
    raw = json.loads(usage.raw_response)
    assert [p["photoType"] for p in raw["photos"]] == [p.photo_type for p in full_item]
    assert [p["kind"] for p in raw["photos"]] == ["front", "label", "back", "sticker"]
    line = raw["photos"][0]["lines"][0]
    assert set(line) == {"text", "score", "box"} and len(line["box"]) == 4
    assert raw["photos"][2]["barcodes"][0]["valid"] is True


def test_the_apps_photo_types_are_classified_by_content(extractor, record, full_item):
    """The app sends `front`, `photo`, `back`: the label and sticker arrive as `photo`."""
    renamed = [
        Photo(full_item[0].data, "image/jpeg", "front"),
        Photo(full_item[1].data, "image/jpeg", "photo"),
        Photo(full_item[3].data, "image/jpeg", "photo"),
    ]
    e = extractor.extract(renamed, None)
    kinds = [p["kind"] for p in json.loads(e.usage.raw_response)["photos"]]
    assert kinds == ["front", "label", "sticker"]
    assert _same("catalogNumber", e.value("catalog_number"), record.catalog_number)
    assert e.review_text is not None


def test_library_code_on_the_sticker_is_never_a_catalog_number(extractor, record, full_item):
    e = extractor.extract([full_item[0], full_item[3]], None)  # front + sticker only
    assert record.library_code == "CO 12/3"
    assert e.catalog_number is None
    lines = [ln["text"] for ln in json.loads(e.usage.raw_response)["photos"][1]["lines"]]
    assert any(ocr_layout.is_library_code(t) for t in lines)  # it was read, and set aside
    assert "12/3" not in (e.value("review_text") or "")


def test_same_value_on_two_photos_raises_confidence(extractor, full_item):
    label_only = extractor.extract([full_item[1]], None)
    both = extractor.extract([full_item[1], full_item[2]], None)  # label + back
    assert both.catalog_number.value == label_only.catalog_number.value
    assert both.catalog_number.confidence > label_only.catalog_number.confidence


# --- artist vs title: layout, then the catalog -------------------------------------------------


def _title_above_artist_cover() -> Photo:
    """A cover that sets the title above the artist: the layout rule ("the upper block is the
    artist") gets it wrong, the catalog gets it right."""
    canvas = Image.new("RGB", (1000, 1000), (32, 40, 70))
    for text, y, size in (("Treasure", 120, 90), ("Cocteau Twins", 700, 70)):
        t = render_text(text, FontSpec("aileron", 700), size, (240, 230, 200))
        canvas.paste(t, ((1000 - t.width) // 2, y), t)
    return Photo(_jpeg(canvas), "image/jpeg", "front_cover")


def test_catalog_decides_artist_vs_title():
    cover = _title_above_artist_cover()
    plain = OcrExtractor().extract([cover], None)
    assert (plain.value("artist_name"), plain.value("album_title")) == ("Treasure", "Cocteau Twins")
    with_catalog = OcrExtractor(catalog=_catalog()).extract([cover], None)
    assert with_catalog.value("artist_name") == "Cocteau Twins"
    assert with_catalog.value("album_title") == "Treasure"
    assert with_catalog.artist_name.confidence > plain.artist_name.confidence
    raw = json.loads(with_catalog.usage.raw_response)
    assert raw["decision"]["photo0"]["artistTitleBy"] == "catalog"


def test_context_hints_break_the_tie_but_values_are_read():
    cover = _title_above_artist_cover()
    ctx = ScanContext(artist_name="cocteau twins", album_title="TREASURE")
    e = OcrExtractor().extract([cover], ctx)
    assert e.value("artist_name") == "Cocteau Twins"  # as printed, not as the app spelled it
    assert e.value("album_title") == "Treasure"


def test_a_record_not_in_the_catalog_keeps_the_layout_reading(extractor):
    rec = make_record(OUT_ROW, np.random.default_rng(5))
    e = OcrExtractor(catalog=_catalog()).extract([_photo("front_cover", rec, 9)], None)
    assert _same("artistName", e.value("artist_name"), rec.artist)
    assert _same("albumTitle", e.value("album_title"), rec.title)


# --- barcodes ---------------------------------------------------------------------------------


def _barcode_photo(patch: Image.Image, photo_type: str = "back_cover") -> Photo:
    canvas = Image.new("RGB", (900, 700), (235, 230, 220))
    canvas.paste(patch, (300, 380))
    return Photo(_jpeg(canvas), "image/jpeg", photo_type)


def _ean13_patch(code: str, module: int = 3) -> Image.Image:
    """Bars for any 13 digits, right or wrong check digit (the synth encoder refuses wrong
    ones, and a misprinted code is the case under test)."""
    from scanbatch.synth import barcode as b

    parity = b._PARITY[int(code[0])]
    left = "".join(
        (b._L if p == "L" else b._G)[int(d)] for p, d in zip(parity, code[1:7], strict=True)
    )
    modules = "101" + left + "01010" + "".join(b._R[int(d)] for d in code[7:]) + "101"
    row = np.repeat(np.array([0 if m == "1" else 255 for m in modules], np.uint8), module)
    row = np.concatenate([np.full(40, 255, np.uint8), row, np.full(40, 255, np.uint8)])
    return Image.fromarray(np.tile(row, (150, 1))).convert("RGB")


def test_upc_a_from_real_bars_is_normalised_to_12_digits(extractor):
    e = extractor.extract([_barcode_photo(render_barcode("036000291452"))], None)
    assert e.value("upc") == "036000291452"  # zxing reports 0036000291452
    assert e.upc.confidence >= 0.95


def test_ean13_keeps_13_digits_and_barcode_on_an_untyped_photo_makes_it_a_back(extractor):
    e = extractor.extract([_barcode_photo(render_barcode("4006381333931"), "photo")], None)
    assert e.value("upc") == "4006381333931"
    assert json.loads(e.usage.raw_response)["photos"][0]["kind"] == "back"


def test_bad_check_digit_lowers_confidence(extractor):
    good = extractor.extract([_barcode_photo(_ean13_patch("0036000291452"))], None)
    bad = extractor.extract([_barcode_photo(_ean13_patch("0036000291453"))], None)
    assert good.value("upc") == "036000291452"
    assert bad.value("upc") == "036000291453"
    assert bad.upc.confidence < 0.5 < good.upc.confidence


def test_app_detected_upc_agreeing_raises_confidence(extractor):
    photo = _barcode_photo(render_barcode("036000291452"))
    alone = extractor.extract([photo], None)
    agreed = extractor.extract([photo], ScanContext(detected_upc="0036000291452"))
    assert agreed.upc.confidence > alone.upc.confidence


# --- errors -----------------------------------------------------------------------------------


def test_a_photo_that_is_not_an_image_names_its_position_and_type(extractor, full_item):
    junk = Photo(b"%PDF-1.7 definitely not a photo", "image/jpeg", "back_cover")
    with pytest.raises(ExtractionError) as info:
        extractor.extract([full_item[0], junk], None)
    assert "photo 2" in info.value.message and "back_cover" in info.value.message
    assert info.value.code == "bad_image" and info.value.retryable is False


def test_heic_photos_are_decoded(extractor, record):
    rng = np.random.default_rng([11, 7])
    art, _ = RENDERERS["front_cover"](record, rng)
    img = photograph(art, rng, DIFFICULTIES["default"])
    e = extractor.extract([Photo(encode(img, "heic", 85), "image/heic", "front")], None)
    assert _same("artistName", e.value("artist_name"), record.artist)


# --- layout rules without the model -------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["SP 1234", "MRG-567", "4AD CAD 3X", "CAD 3X", "WARPLP 123", "OLE 123-1", "T&G 45"]
)
def test_catalog_number_patterns(text):
    assert ocr_layout.is_catalog_number(text)


@pytest.mark.parametrize(
    "text", ["RO 5/3", "CO 12/3", "33 1/3 RPM", "SIDE A", "STEREO", "1987", "Route 66", "A3"]
)
def test_not_catalog_numbers(text):
    assert not ocr_layout.is_catalog_number(text)


@pytest.mark.parametrize("text", ["RO 5/3", "CO 12/3", "ABC 1/12", "ni 2/1"])
def test_library_codes(text):
    assert ocr_layout.is_library_code(text)


@pytest.mark.parametrize(
    ("photo_type", "kind"),
    [
        ("front", "front"),
        ("front_cover", "front"),
        ("back", "back"),
        ("back_cover", "back"),
        ("center_label", "label"),
        ("Center Label", "label"),
        ("sticker", "sticker"),
        ("photo", None),
        ("whatever", None),
    ],
)
def test_photo_type_names(photo_type, kind):
    assert ocr_layout.canonical_kind(photo_type) == kind


def _line(text: str, y: float, h: float = 30.0, x: float = 100.0, w: float = 300.0) -> OcrLine:
    return OcrLine(text, 0.99, ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))


def test_classify_by_content():
    size = (1000, 1000)
    sticker = [_line("WSBR 88.7 FM LIBRARY", 100), _line("RO 5/3", 100, x=600)]
    label = [_line("Merge", 200, 60), _line("MRG-567", 300), _line("SIDE A", 480)]
    back = [_line("A1 Intro 3:12", 300), _line("A2 Outro 4:01", 340)]
    assert ocr_layout.classify(sticker, [], size) == "sticker"
    assert ocr_layout.classify(label, [], size) == "label"
    assert ocr_layout.classify(back, [], size) == "back"
    assert ocr_layout.classify([_line("Big Name", 100, 90)], [], size) == "front"
    assert ocr_layout.classify([], [BarcodeRead("0036000291452", "EAN13", True)], size) == "back"


def test_wrapped_title_is_one_block_and_two_short_rows_are_two():
    wrapped = [_line("In the Aeroplane", 100, 60, w=700), _line("Over the Sea", 175, 60, w=500)]
    blocks = ocr_layout.group_blocks(wrapped, wrap_width=400)
    assert [b.text for b in blocks] == ["In the Aeroplane Over the Sea"]
    short = [_line("Low", 100, 60, w=150), _line("Loaded", 175, 60, w=250)]
    assert len(ocr_layout.group_blocks(short, wrap_width=400)) == 2
