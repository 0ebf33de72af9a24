"""EAN-13 / UPC-A barcodes drawn from their digits.

A UPC-A code is an EAN-13 code whose first digit is 0, so one encoder serves both. The bars
are real: zxing-cpp decodes them (tests/test_barcode.py), which is what lets the OCR
extractor be tuned against these photos."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from scanbatch.synth.fonts import pil_font

# Left-hand odd (L) and even (G) parity patterns and right-hand (R) patterns, per digit.
_L = ("0001101", "0011001", "0010011", "0111101", "0100011",
      "0110001", "0101111", "0111011", "0110111", "0001011")  # fmt: skip
_G = tuple(p[::-1].translate(str.maketrans("01", "10")) for p in _L)
_R = tuple(p.translate(str.maketrans("01", "10")) for p in _L)
# The first digit is not drawn: it selects the parity of the six left digits.
_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG",
           "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")  # fmt: skip

QUIET_MODULES = 11  # the standard asks for at least 9 (left) and 7 (right)


def check_digit(digits: str) -> str:
    """GTIN check digit for 11 (UPC-A) or 12 (EAN-13) data digits."""
    if not digits.isdigit():
        raise ValueError(f"barcode digits must be 0-9, got {digits!r}")
    # Weights 3,1,3,... counted from the rightmost data digit.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def is_valid(code: str) -> bool:
    return code.isdigit() and len(code) in (12, 13) and check_digit(code[:-1]) == code[-1]


def ean13_modules(code: str) -> str:
    """The 95 modules ('1' = bar) of a 13-digit EAN or a 12-digit UPC-A code."""
    if len(code) == 12:
        code = "0" + code
    if len(code) != 13 or not is_valid(code):
        raise ValueError(f"not a valid EAN-13/UPC-A code: {code!r}")
    parity = _PARITY[int(code[0])]
    left = "".join((_L if p == "L" else _G)[int(d)] for p, d in zip(parity, code[1:7], strict=True))
    right = "".join(_R[int(d)] for d in code[7:])
    return "101" + left + "01010" + right + "101"


def render_barcode(code: str, module_px: int = 3, bar_height: int = 150) -> Image.Image:
    """A white RGB patch with the bars and the human-readable digits under them."""
    modules = ean13_modules(code)
    quiet = QUIET_MODULES * module_px
    digit_h = int(module_px * 9)
    width = len(modules) * module_px + 2 * quiet
    height = bar_height + digit_h + 3 * module_px
    row = np.repeat(np.array([0 if m == "1" else 255 for m in modules], np.uint8), module_px)
    bars = np.full((height, width), 255, np.uint8)
    bars[module_px : module_px + bar_height, quiet : quiet + row.size] = row
    img = Image.fromarray(bars).convert("RGB")
    draw = ImageDraw.Draw(img)
    font = pil_font(digit_h)
    # Printed as on a sleeve: UPC-A "0 12345 67890 5", EAN-13 "4 006381 333931".
    if len(code) == 12:
        text = f"{code[0]} {code[1:6]} {code[6:11]} {code[11]}"
    else:
        text = f"{code[0]} {code[1:7]} {code[7:]}"
    tw = draw.textlength(text, font=font)
    draw.text(((width - tw) / 2, bar_height + 2 * module_px), text, fill=0, font=font)
    return img
