import pytest

from scanbatch.upc import gtin_check_digit, normalize_upc, upc_check_digit_ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("036172945825", "036172945825"),
        ("0036172945825", "036172945825"),  # zxing-cpp reports UPC-A as EAN-13
        ("00036172945825", "036172945825"),  # GTIN-14 padding
        ("0 36172 94582 5", "036172945825"),
        ("0-36172-94582-5", "036172945825"),
        ("UPC: 0 36172 94582 5", "036172945825"),
        ("EAN-13 5012345678900", "5012345678900"),
        ("5012345678900", "5012345678900"),
        ("  4005939000004 ", "4005939000004"),
    ],
)
def test_normalize(text, expected):
    assert normalize_upc(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   ",
        "12345",
        "12345678901234567",
        "RO 5/3",
        "036172945825 side A",
        "abc036172945825",
        "٠٣٦١٧٢٩٤٥٨٢٥",
    ],
)
def test_not_a_code(text):
    assert normalize_upc(text) is None


@pytest.mark.parametrize(
    "digits", ["036172945825", "5012345678900", "4005939000004", "96385074", "00036172945825"]
)
def test_check_digit_ok(digits):
    assert upc_check_digit_ok(digits)


@pytest.mark.parametrize(
    "digits", ["036172945826", "5012345678901", "", None, "12345", "03617294582x", "٠٣٦١٧٢٩٤٥٨٢٥"]
)
def test_check_digit_wrong(digits):
    assert not upc_check_digit_ok(digits)


def test_every_wrong_check_digit_is_caught():
    payload = "03617294582"
    good = gtin_check_digit(payload)
    for d in range(10):
        assert upc_check_digit_ok(f"{payload}{d}") is (d == good)


def test_normalised_form_keeps_a_valid_check_digit():
    # Dropping the EAN-13 leading 0 leaves a valid UPC-A: the weights line up from the right.
    assert upc_check_digit_ok("0036172945825")
    assert upc_check_digit_ok(normalize_upc("0036172945825"))
