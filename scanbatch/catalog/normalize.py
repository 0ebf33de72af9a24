"""Text keys for matching. Two levels:

- `normalize`: what a librarian would call "the same name": case, accents, punctuation, "&" or
  "and" (dropped: OCR loses a lone "&") and a leading/trailing article do not matter.
- `skeleton`: `normalize` plus folding of the characters OCR confuses (0/o, 1/l/i, 5/s, 8/b,
  rn/m, vv/w). Both sides of every comparison go through it, so an exact title still compares
  equal to itself; the few extra collisions it causes are between strings that already differ
  only by glyph shape, which is what a photo cannot tell apart anyway.
"""

from __future__ import annotations

import re
import unicodedata

# Letters that NFKD does not decompose into base letter + combining mark.
_SPECIAL = str.maketrans(
    {"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d", "þ": "th",
     "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ı": "i"}
)  # fmt: skip
_APOSTROPHES = re.compile(r"['’‘`´]")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_AND = re.compile(r"(?<=\S) (?:and )+(?=\S)")
_OCR_SINGLE = str.maketrans({"0": "o", "1": "l", "i": "l", "5": "s", "8": "b"})


def fold_ascii(text: str) -> str:
    """Strip diacritics: "Björk Guðmundsdóttir" -> "Bjork Gudmundsdottir"."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str | None) -> str:
    if not text:
        return ""
    s = fold_ascii(text).casefold().replace("&", " ")
    s = _APOSTROPHES.sub("", s)  # "Don't" and "Dont" are the same word
    s = _NON_ALNUM.sub(" ", s).strip()
    s = _AND.sub(" ", s).strip()  # "&", "and" or nothing (OCR drops a lone "&")
    # Libraries file "The Beatles" as "Beatles, The"; the article never decides a match.
    if s.startswith("the ") and len(s) > 4:
        s = s[4:]
    if s.endswith(" the") and "," in text:
        s = s[:-4]
    return s


def ocr_fold(norm: str) -> str:
    """Fold an already normalised string to its OCR skeleton."""
    return norm.replace("rn", "m").replace("vv", "w").translate(_OCR_SINGLE)


def skeleton(text: str | None) -> str:
    return ocr_fold(normalize(text))


def sort_tokens(key: str) -> str:
    """Word order does not matter ("Dylan, Bob" vs "Bob Dylan")."""
    return " ".join(sorted(key.split()))
