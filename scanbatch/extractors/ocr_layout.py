"""Layout heuristics of the OCR extractor: which photo is which, and which text line is which
field. Pure functions over OCR lines and barcode reads, so they are tested without a model.

Photo kinds, after mapping the names clients use (`canonical_kind`):
- ``front``: the two biggest blocks of type are artist and title (which is which is decided by
  the caller: the catalog, then the app's hints, then "the upper one is the artist"). Rows join
  into one block only as a wrapped name (`_joins`); a small line off to one side is a label
  logo (weak evidence for the label name).
- ``label``: the center label. A catalog-number line (`is_catalog_number`) is the catalog
  number; the biggest type above it the label name; the first two name-like lines below the
  spindle hole the artist and title.
- ``back``: the barcode gives the UPC (else the printed digits, check digit verified); the top
  lines artist and title, the "(P) 1990 Label" line the label, a catalog-number line the number.
- ``sticker``: the station's review sticker. Its printed header and the library code
  (``RO 5/3``: 1-3 letters, number/number) are dropped; the rest, in reading order, is the
  review. The library code never counts as a catalog number anywhere.
A photo of no known type (the app's ``photo``) is classified by content (`classify`).

Every reading carries a confidence: the OCR score of its line times how much that kind of photo
is trusted for that field (`PRIOR`); the extractor then combines readings across photos.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from statistics import median

from scanbatch.extractors.ocr_engine import BarcodeRead, OcrLine
from scanbatch.upc import normalize_upc, upc_check_digit_ok

FRONT, LABEL, BACK, STICKER = "front", "label", "back", "sticker"

_ALIASES = {
    "front": FRONT,
    "front_cover": FRONT,
    "cover": FRONT,
    "frontcover": FRONT,
    "back": BACK,
    "back_cover": BACK,
    "backcover": BACK,
    "rear": BACK,
    "center_label": LABEL,
    "centre_label": LABEL,
    "label": LABEL,
    "side_a": LABEL,
    "side_b": LABEL,
    "sticker": STICKER,
    "review": STICKER,
    "review_sticker": STICKER,
}


def canonical_kind(photo_type: str) -> str | None:
    """The photo kind for a client's photo type name, or None when it must be read from the
    content (the app's generic ``photo``, or any name we do not know)."""
    key = re.sub(r"[\s\-]+", "_", photo_type.strip().lower())
    return _ALIASES.get(key)


# --- patterns -------------------------------------------------------------------------------

# The station's library code on its stickers: 1-3 letters, then artist number / album number.
LIBRARY_CODE = re.compile(r"^[A-Z]{1,3}\s*[-.]?\s*\d{1,4}\s*[/|]\s*\d{1,4}$")
_LIBRARY_CODE_IN = re.compile(r"\b[A-Z]{1,3}\s*\d{1,4}\s*[/|]\s*\d{1,4}\b")

# A label's catalog number: an uppercase prefix of one or two tokens (letters, or letters with
# digits like "4AD"), an optional space or dash, then digits with an optional short suffix
# ("SP 1234", "MRG-567", "4AD CAD 3X", "WARPLP 123", "OLE 123-1", "T&G 45", "BST-81234").
CATALOG_NUMBER = re.compile(
    r"^(?:[A-Z0-9&]{1,6}[ \-.])?[A-Z0-9&]{0,7}[A-Z&][ \-.]?\d{1,6}[A-Z]{0,2}(?:-\d{1,2})?$"
)
# Lines a label carries that look like codes but are not catalog numbers.
_NOT_CATALOG = re.compile(
    r"(?:^|\s)(?:RPM|SIDE|STEREO|MONO|TRACK|DISC|VOL|NO|MADE|IN|USA|UK|℗|©|\(C\)|\(P\))"
    r"(?:\s|$)|\d+\s*[⅓½]|\d+\s*1/3|\b\d{1,2}:\d{2}\b|^\(?[PC]\)?\s*\d{4}",
    re.I,
)

_ALNUM = re.compile(r"[A-Za-z0-9]")
# Small print that is never artist, title or label name on a cover or label.
_BOILERPLATE = re.compile(
    r"^(?:stereo|mono|side\s*[ab12]|[ab]|33\s*(?:1/3|⅓)?\s*rpm|45\s*rpm|rpm|"
    r"long\s*playing|high\s*fidelity|made\s*in\s*\w+|all\s*rights\s*reserved.*|"
    r"(?:\(?[cp℗©]\)|[℗©])\s*\d{4}.*|.*\bunauthori[sz]ed\b.*|digitally\s*remastered)$",
    re.I,
)


def normalize_code(text: str) -> str:
    """A code as printed, minus OCR noise: uppercase, single spaces, no stray punctuation at the
    ends, `O` read inside digits fixed."""
    t = " ".join(text.upper().replace("—", "-").replace("–", "-").split())
    t = t.strip(" .,:;'\"`")
    return t


def is_library_code(text: str) -> bool:
    return bool(LIBRARY_CODE.match(normalize_code(text)))


def is_catalog_number(text: str) -> bool:
    """True for a label catalog-number pattern; never for the station's library code."""
    t = normalize_code(text)
    # Labels print catalog numbers in capitals; a mixed-case line is a title or a track.
    if any(c.islower() for c in t.replace("x", "X")) or text != text.upper():
        return False
    if len(t) < 3 or len(t) > 18 or is_library_code(t) or "/" in t:
        return False
    if not any(c.isdigit() for c in t) or not any(c.isalpha() for c in t):
        return False
    if _NOT_CATALOG.search(t):
        return False
    return bool(CATALOG_NUMBER.match(t))


def is_boilerplate(text: str) -> bool:
    return bool(_BOILERPLATE.match(text.strip()))


def meaningful(text: str) -> bool:
    return len(_ALNUM.findall(text)) >= 2 or (len(text) == 1 and text.isalnum())


# --- blocks ---------------------------------------------------------------------------------


@dataclass
class Block:
    """Lines set in the same type size that belong together (a title wrapped over two lines,
    or one line the detector split into words)."""

    lines: list[OcrLine] = field(default_factory=list)

    @property
    def text(self) -> str:
        rows: list[list[OcrLine]] = []
        for line in sorted(self.lines, key=lambda ln: (ln.center[1], ln.left)):
            if rows and abs(rows[-1][0].center[1] - line.center[1]) < 0.5 * line.height:
                rows[-1].append(line)
            else:
                rows.append([line])
        return " ".join(" ".join(ln.text for ln in sorted(r, key=lambda ln: ln.left)) for r in rows)

    @property
    def height(self) -> float:
        return median(ln.height for ln in self.lines)

    @property
    def score(self) -> float:
        # Character-weighted: a long line read well outweighs a stray short one.
        total = sum(len(ln.text) for ln in self.lines) or 1
        return sum(ln.score * len(ln.text) for ln in self.lines) / total

    @property
    def top(self) -> float:
        return min(ln.top for ln in self.lines)

    @property
    def bottom(self) -> float:
        return max(ln.bottom for ln in self.lines)

    @property
    def left(self) -> float:
        return min(ln.left for ln in self.lines)

    @property
    def right(self) -> float:
        return max(ln.right for ln in self.lines)


def _case_style(text: str) -> str | None:
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 2:
        return None  # "1971", "EP": says nothing
    return "upper" if all(c.isupper() for c in letters) else "mixed"


def _joins(block: Block, line: OcrLine, wrap_width: float, elsewhere: set[str]) -> bool:
    h = block.height
    last = max(block.lines, key=lambda ln: ln.bottom)
    # Same row, the detector split words apart.
    same_row = abs(last.center[1] - line.center[1]) < 0.4 * h
    if same_row:
        gap = max(line.left - block.right, block.left - line.right)
        return abs(line.height - h) <= 0.2 * max(h, line.height) and gap < 1.2 * h
    # The next row of one wrapped name. Artist and title are often set one above the other
    # in similar type, so the rules are strict: the same size (a designer keeps the size when
    # wrapping), the same case, a long row above (one wraps what does not fit), close below,
    # and the rows not printed as separate lines on another photo (the label, the back).
    if abs(line.height - h) > 0.1 * max(h, line.height):
        return False
    styles = {_case_style(last.text), _case_style(line.text)} - {None}
    if len(styles) > 1 or block.right - block.left < wrap_width:
        return False
    if _skey(last.text) in elsewhere and _skey(line.text) in elsewhere:
        return False
    gap = line.top - block.bottom
    overlap = min(line.right, block.right) - max(line.left, block.left)
    return -0.3 * h < gap < 0.6 * h and overlap > 0.3 * min(line.width, block.right - block.left)


def _skey(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def group_blocks(
    lines: list[OcrLine], wrap_width: float = 0.0, elsewhere: set[str] | None = None
) -> list[Block]:
    """Lines grouped into blocks; `elsewhere` holds `_skey` forms of lines read on the item's
    other photos."""
    blocks: list[Block] = []
    for line in sorted(lines, key=lambda ln: (ln.top, ln.left)):
        for block in blocks:
            if _joins(block, line, wrap_width, elsewhere or set()):
                block.lines.append(line)
                break
        else:
            blocks.append(Block([line]))
    return blocks


# --- per-photo readings ---------------------------------------------------------------------

# How much a kind of photo is trusted for a field, as a factor on the OCR score: the front is
# where artist and title are set large, the center label where label name and catalog number
# are authoritative; the back repeats them in smaller type.
PRIOR = {
    (FRONT, "artist_name"): 1.0,
    (FRONT, "album_title"): 1.0,
    (FRONT, "label_name"): 0.35,
    (LABEL, "label_name"): 0.9,
    (LABEL, "catalog_number"): 0.95,
    (LABEL, "artist_name"): 0.6,
    (LABEL, "album_title"): 0.6,
    (BACK, "artist_name"): 0.6,
    (BACK, "album_title"): 0.6,
    (BACK, "label_name"): 0.6,
    (BACK, "catalog_number"): 0.8,
}


@dataclass(frozen=True)
class Reading:
    """One candidate value for a field, read on one photo (`photo` -1: not from one photo)."""

    field: str
    value: str
    confidence: float
    photo: int
    note: str = ""


@dataclass
class FrontReading:
    """Artist/title candidates of a front cover, biggest first; the order is decided later."""

    photo: int
    blocks: list[Block]
    others: list[OcrLine] = field(default_factory=list)  # small type: a label logo maybe


_DURATION = re.compile(r"\b\d{1,2}:\d{2}\b")
# The sticker's printed header: a call sign ("WSBR 88.7 FM") or the word LIBRARY.
_STATION = re.compile(r"^(?:[KW][A-Z]{2,3}\s+\d{2,3}\.\d\b.*|.*\bLIBRARY\b.*)$", re.I)
_LABEL_MARK = re.compile(r"^(?:SIDE\s*[AB12]|33\s*1/3\s*RPM|33\s*RPM|45\s*RPM|STEREO|MONO)$", re.I)
_NUMBERED = re.compile(r"^\d{1,2}\s*[.)]\s*\S")


def classify(lines: list[OcrLine], barcodes: list[BarcodeRead], size: tuple[int, int]) -> str:
    """The kind of a photo whose type did not say, by its content: a barcode (or a printed
    12-13 digit code) means a back; the station's library code or header a sticker; a
    catalog-number line with side/speed marks or numbered tracks (what a center label prints
    around its hole) a label; track times a back; anything else is taken for a front."""
    if barcodes:
        return BACK
    texts = [ln.text for ln in lines]
    if any(is_library_code(t) for t in texts) or any(_STATION.match(t) for t in texts):
        return STICKER
    if any(normalize_upc(t) for t in texts):
        return BACK
    durations = sum(bool(_DURATION.search(t)) for t in texts)
    label_marks = (
        any(is_catalog_number(t) for t in texts)
        + any(_LABEL_MARK.match(t.strip()) for t in texts)
        + (sum(bool(_NUMBERED.match(t)) for t in texts) >= 2)
    )
    if durations >= 2:
        return BACK
    if label_marks >= 2:
        return LABEL
    return FRONT


def candidate_lines(lines: list[OcrLine], min_score: float) -> list[OcrLine]:
    return [
        ln
        for ln in lines
        if ln.score >= min_score
        and meaningful(ln.text)
        and not is_boilerplate(ln.text)
        and not is_library_code(ln.text)
    ]


def read_front(
    photo: int,
    lines: list[OcrLine],
    min_score: float,
    size: tuple[int, int],
    other_lines: list[str] = (),  # type: ignore[assignment]
    label_names: list[str] = (),  # type: ignore[assignment]
) -> FrontReading:
    """Blocks of display type, biggest first. `other_lines` (text read on the item's other
    photos) keeps artist and title apart when the front sets them alike; a block that is the
    label's name as read on the label or the back is the label's logo, not a name."""
    cands = [ln for ln in candidate_lines(lines, min_score) if not is_catalog_number(ln.text)]
    elsewhere = {_skey(t) for t in other_lines}
    blocks = group_blocks(cands, wrap_width=0.4 * size[0], elsewhere=elsewhere)
    logos = {_skey(n) for n in label_names}
    names = [b for b in blocks if _skey(b.text) not in logos] or blocks
    names.sort(key=lambda b: b.height, reverse=True)
    used = {id(ln) for b in names[:2] for ln in b.lines}
    others = [ln for ln in cands if id(ln) not in used]
    return FrontReading(photo=photo, blocks=names, others=others)


def front_label_reading(front: FrontReading, size: tuple[int, int]) -> list[Reading]:
    """A label logo printed small in a corner of the front: weak evidence for the label."""
    w = size[0]
    big = front.blocks[0].height if front.blocks else 0.0
    # Off to one side and in small type; only when it is the one such line (a cover with
    # credits or a sticker has several, and then none of them is trusted).
    corner = [
        ln
        for ln in front.others
        if ln.height < 0.85 * big
        and (ln.center[0] < 0.35 * w or ln.center[0] > 0.65 * w)
        and not any(c.isdigit() for c in ln.text)
    ]
    if len(corner) != 1:
        return []
    ln = corner[0]
    return [Reading("label_name", ln.text, ln.score * PRIOR[FRONT, "label_name"], front.photo)]


_TRACK_LINE = re.compile(r"^(?:[AB]?\d{1,2}\s*[.)]\s*\S|[AB]?\d{1,2}\s|[AB]\d\b|side\s)", re.I)
_RIGHTS = re.compile(
    r"(?:\(P\)|℗|\(C\)|©|\bP\b)?\s*(?:19|20)\d\d\s+(.+?)[.,]?\s*(?:A?ll\s*rights.*)?$", re.I
)


def _names(lines: list[OcrLine]) -> list[OcrLine]:
    """Lines that may be an artist or a title: not tracks, durations, codes or small print."""
    return [
        ln
        for ln in lines
        if not _TRACK_LINE.match(ln.text)
        and not _DURATION.search(ln.text)
        and not is_catalog_number(ln.text)
        and not _RIGHTS.match(ln.text)
    ]


def _catalog_number_reading(photo: int, kind: str, lines: list[OcrLine]) -> list[Reading]:
    numbers = [ln for ln in lines if is_catalog_number(ln.text)]
    if not numbers:
        return []
    # A catalog number is printed once, in type big enough to read: the largest wins.
    best = max(numbers, key=lambda ln: ln.height * ln.score)
    conf = best.score * PRIOR[kind, "catalog_number"]
    return [Reading("catalog_number", normalize_code(best.text), conf, photo)]


def read_label(photo: int, lines: list[OcrLine], min_score: float) -> list[Reading]:
    """Center label: label name on top, catalog number under it, artist and title below the
    spindle hole (where a label prints them)."""
    cands = candidate_lines(lines, min_score)
    out = _catalog_number_reading(photo, LABEL, cands)
    numbers = [ln for ln in cands if is_catalog_number(ln.text)]
    rest = [ln for ln in cands if not is_catalog_number(ln.text)]
    if not rest:
        return out
    top = min(ln.top for ln in lines)
    bottom = max(ln.bottom for ln in lines)
    mid = (top + bottom) / 2
    if numbers:
        number = max(numbers, key=lambda ln: ln.height * ln.score)
        above = [ln for ln in rest if ln.bottom <= number.center[1]]
    else:
        above = [ln for ln in rest if ln.center[1] < mid]
    pool = above or rest
    # The label's own name is its logo: the biggest type above the number.
    name = max(pool, key=lambda ln: ln.height * (0.5 + 0.5 * ln.score))
    out.append(Reading("label_name", name.text, name.score * PRIOR[LABEL, "label_name"], photo))
    below = [ln for ln in _names(rest) if ln.center[1] > mid and ln is not name]
    below.sort(key=lambda ln: ln.top)
    for fld, ln in zip(("artist_name", "album_title"), below[:2], strict=False):
        out.append(Reading(fld, ln.text, ln.score * PRIOR[LABEL, fld], photo, note="label"))
    return out


def read_back(
    photo: int, lines: list[OcrLine], barcodes: list[BarcodeRead], min_score: float
) -> list[Reading]:
    """The UPC from the bars (or the digits printed under them); artist and title from the top
    lines, label and catalog number from the small print."""
    out = upc_readings(photo, lines, barcodes)
    cands = candidate_lines(lines, min_score)
    out += _catalog_number_reading(photo, BACK, cands)
    for ln in lines:
        m = _RIGHTS.match(ln.text)
        if m and meaningful(m.group(1)) and ln.score >= min_score:
            name = m.group(1).strip(" .,")
            out.append(Reading("label_name", name, ln.score * PRIOR[BACK, "label_name"], photo))
            break
    names = sorted(_names(cands), key=lambda ln: ln.top)
    if names:
        # The header: the first line and the next one below it if set nearly as large.
        first = names[0]
        out.append(
            Reading("artist_name", first.text, first.score * PRIOR[BACK, "artist_name"], photo)
        )
        if len(names) > 1 and names[1].height >= 0.6 * first.height:
            t = names[1]
            out.append(Reading("album_title", t.text, t.score * PRIOR[BACK, "album_title"], photo))
    return out


def upc_readings(photo: int, lines: list[OcrLine], barcodes: list[BarcodeRead]) -> list[Reading]:
    out: list[Reading] = []
    for b in barcodes:
        upc = normalize_upc(b.text)
        if upc is None:
            continue
        ok = b.valid and upc_check_digit_ok(upc)
        # zxing verifies the bars' own checksum: a valid read is near-certain; a read with a
        # failed checksum is a likely misread digit.
        conf = 0.97 if ok else 0.3
        out.append(Reading("upc", upc, conf, photo, note="barcode" if ok else "barcode-bad-check"))
    if out:
        return out
    for ln in lines:
        upc = normalize_upc(ln.text)
        if upc is None:
            continue
        ok = upc_check_digit_ok(upc)
        conf = ln.score * (0.85 if ok else 0.3)
        out.append(Reading("upc", upc, conf, photo, note="printed" if ok else "printed-bad-check"))
    return out


def read_sticker(photo: int, lines: list[OcrLine], min_score: float) -> list[Reading]:
    """The review: every handwritten line but the library code, in reading order."""
    kept = []
    for ln in sorted(lines, key=lambda ln: (ln.center[1], ln.left)):
        if ln.score < min_score * 0.8 or not meaningful(ln.text) or _STATION.match(ln.text):
            continue
        text = _LIBRARY_CODE_IN.sub("", normalize_spaces(ln.text)).strip(" -,;")
        if not meaningful(text):
            continue
        kept.append((text, ln))
    if not kept:
        return []
    text = " ".join(t for t, _ in kept)
    total = sum(len(t) for t, _ in kept)
    score = sum(ln.score * len(t) for t, ln in kept) / total
    # Handwriting is read less reliably than type (the recogniser drops the uneven spaces
    # between handwritten words most often), and a review rarely needs to be exact.
    return [Reading("review_text", text, score * 0.75, photo)]


def normalize_spaces(text: str) -> str:
    return " ".join(text.split())
