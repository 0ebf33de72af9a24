"""UPC-A / EAN-13 normalisation and check-digit verification, shared by every extractor.

Barcode readers and models disagree on the form of the same code: zxing-cpp reports a UPC-A as
13 digits with a leading 0, a model may copy the spaces and dashes printed under the bars, and
a GTIN-14 pads with zeros. The catalog keys on one form, so everything goes through here."""

from __future__ import annotations

import re

# What may surround the digits of a printed or transcribed code: a "UPC"/"EAN" label and the
# separators printed between digit groups. Anything else (letters, other numbers) means the
# text is not a bare code, and guessing which digits belong to it would invent a UPC.
_LABEL = re.compile(r"^\s*(?:upc(?:-?a)?|ean(?:-?13)?|gtin(?:-?1[234])?|barcode)\s*[:#]?\s*", re.I)
_ALLOWED = re.compile(r"^[\d\s.\-]+$", re.ASCII)

GTIN_LENGTHS = (8, 12, 13, 14)


def normalize_upc(text: str | None) -> str | None:
    """The code's digits in canonical form, or None when `text` is not a 12–13 digit code.

    A UPC-A comes back as 12 digits, also when written as an EAN-13 with a leading 0 (or as a
    zero-padded GTIN-14); any other EAN-13 as 13 digits. The check digit is not verified here
    (see `upc_check_digit_ok`): a misread code is still worth showing, with low confidence."""
    if not text:
        return None
    body = _LABEL.sub("", text.strip())
    if not body or not _ALLOWED.match(body):
        return None
    digits = re.sub(r"\D", "", body, flags=re.ASCII)
    if len(digits) == 14 and digits.startswith("0"):
        digits = digits[1:]
    if len(digits) == 13 and digits.startswith("0"):
        digits = digits[1:]
    return digits if len(digits) in (12, 13) else None


def gtin_check_digit(payload: str) -> int:
    """The GS1 mod-10 check digit for `payload` (the digits without the check digit)."""
    # Weights 3,1,3,1,... starting from the rightmost payload digit, for every GTIN length.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def upc_check_digit_ok(digits: str | None) -> bool:
    """True when `digits` is an 8, 12, 13 or 14 digit GTIN whose last digit is its check digit."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    if len(digits) not in GTIN_LENGTHS:
        return False
    return gtin_check_digit(digits[:-1]) == int(digits[-1])
