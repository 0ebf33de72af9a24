"""The synthetic barcodes are real: zxing-cpp decodes them, flat and photographed."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp

from scanbatch.synth.barcode import check_digit, ean13_modules, is_valid, render_barcode
from scanbatch.synth.distort import DIFFICULTIES, photograph
from scanbatch.synth.records import BUILTIN, make_record
from scanbatch.synth.render import back_cover


def test_check_digits_of_published_codes() -> None:
    assert check_digit("03600029145") == "2"  # UPC-A 036000291452 (the GS1 example)
    assert check_digit("400638133393") == "1"  # EAN-13 4006381333931
    assert is_valid("036000291452") and not is_valid("036000291453")


def test_modules_have_guards_and_95_modules() -> None:
    modules = ean13_modules("4006381333931")
    assert len(modules) == 95
    assert modules[:3] == "101" and modules[45:50] == "01010" and modules[-3:] == "101"


def test_invalid_code_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        ean13_modules("036000291453")


@pytest.mark.parametrize(
    ("code", "decoded"),
    [("036000291452", "0036000291452"), ("4006381333931", "4006381333931")],
)
def test_rendered_barcode_decodes(code: str, decoded: str) -> None:
    results = zxingcpp.read_barcodes(render_barcode(code))
    # zxing reports UPC-A as EAN-13 with a leading 0.
    assert [r.text for r in results] == [decoded]


def test_photographed_back_cover_barcode_decodes() -> None:
    rng = np.random.default_rng(5)
    rec = make_record(BUILTIN[0], rng)
    art, shown = back_cover(rec, rng)
    assert "upc" in shown
    photo = photograph(art, rng, DIFFICULTIES["default"])
    texts = [r.text for r in zxingcpp.read_barcodes(photo)]
    assert texts and texts[0].removeprefix("0" if len(rec.upc) == 12 else "") == rec.upc
