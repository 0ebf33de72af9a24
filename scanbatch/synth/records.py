"""The records a synthetic set shows: drawn from the catalog CSV (or a small built-in list when
there is none), plus a share of records that are not in the catalog (album_id None).

Catalog numbers follow real label patterns (`SP 1234`, `MRG-567`, `CAD 3X`, `SST 001`); the
station's library code (`RO 5/3`, letters + artist number / album number) is kept apart because
the extractor must never report it as a catalog number."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scanbatch.errors import BadRequest
from scanbatch.models import library_code
from scanbatch.synth.barcode import check_digit


@dataclass(frozen=True)
class CatalogRow:
    album_id: int | None
    artist: str
    title: str
    label: str | None = None
    code_letters: str | None = None
    code_artist_number: int | None = None
    code_number: int | None = None
    catalog_number: str | None = None
    upc: str | None = None


@dataclass
class Record:
    album_id: int | None
    artist: str
    title: str
    label: str
    catalog_number: str
    upc: str
    library_code: str
    review: list[str]  # the sticker's handwritten lines
    tracks_a: list[str] = field(default_factory=list)
    tracks_b: list[str] = field(default_factory=list)
    year: int = 1990

    @property
    def review_text(self) -> str:
        return " ".join(self.review)


# A small stand-in catalog, used until/unless a catalog CSV is given.
BUILTIN: tuple[CatalogRow, ...] = tuple(
    CatalogRow(i + 1, a, t, lab, code_letters=cl, code_artist_number=can, code_number=cn)
    for i, (a, t, lab, cl, can, cn) in enumerate(
        [
            ("Cocteau Twins", "Treasure", "4AD", "CO", 12, 3),
            ("Superchunk", "Foolish", "Merge", "SU", 4, 2),
            ("Minutemen", "Double Nickels on the Dime", "SST", "MI", 7, 1),
            ("Nirvana", "Bleach", "Sub Pop", "NI", 2, 1),
            ("Yo La Tengo", "Painful", "Matador", "YO", 3, 5),
            ("Bill Callahan", "Apocalypse", "Drag City", "CA", 9, 4),
            ("Low", "Things We Lost in the Fire", "Kranky", "LO", 6, 6),
            ("Slint", "Spiderland", "Touch and Go", "SL", 1, 2),
            ("Madvillain", "Madvillainy", "Stones Throw", "MA", 21, 1),
            ("Sharon Van Etten", "Tramp", "Jagjaguwar", "VA", 8, 3),
            ("The Raincoats", "Odyshape", "Rough Trade", "RA", 5, 2),
            ("New Order", "Power, Corruption & Lies", "Factory", "NE", 14, 2),
            ("Angel Olsen", "Burn Your Fire for No Witness", "Jagjaguwar", "OL", 3, 2),
            ("Beach House", "Teen Dream", "Sub Pop", "BE", 11, 3),
            ("Pixies", "Doolittle", "4AD", "PI", 2, 4),
            ("Herbie Hancock", "Maiden Voyage", "Blue Note", "HA", 6, 1),
            ("Neutral Milk Hotel", "In the Aeroplane Over the Sea", "Merge", "NE", 7, 2),
            ("Wipers", "Youth of America", "Park Avenue", "WI", 1, 2),
            ("Broadcast", "Tender Buttons", "Warp", "BR", 19, 4),
            ("Sun Ra", "Lanquidity", "Philly Jazz", "RA", 2, 9),
            ("Joan Armatrading", "Show Some Emotion", "A&M", "AR", 5, 3),
            ("Bad Brains", "Rock for Light", "PVC", "BA", 4, 2),
            ("Khruangbin", "Con Todo El Mundo", "Dead Oceans", "KH", 2, 2),
            ("Waxahatchee", "Cerulean Salt", "Don Giovanni", "WA", 13, 1),
            ("Mdou Moctar", "Ilana", "Sahel Sounds", "MO", 3, 1),
            ("The Velvet Underground", "Loaded", "Cotillion", "VE", 1, 4),
        ]
    )
)

# Real prefix patterns per label: `#` is a digit; the count of `#` is the number length.
LABEL_PATTERNS = {
    "4ad": ["CAD ###", "CAD #X", "BAD ###"],
    "a&m": ["SP ####", "SP-####"],
    "merge": ["MRG-###", "MRG ###"],
    "sst": ["SST ###"],
    "sub pop": ["SP ###", "SPLP ###"],
    "matador": ["OLE ###-1", "OLE-###"],
    "drag city": ["DC ###"],
    "kranky": ["KRANK ###"],
    "touch and go": ["TG ##", "T&G ###"],
    "stones throw": ["STH ####"],
    "jagjaguwar": ["JAG ###"],
    "rough trade": ["ROUGH ##"],
    "factory": ["FACT ##", "FACT ###"],
    "blue note": ["BST-8####", "BLP ####"],
    "warp": ["WARPLP ###"],
    "dead oceans": ["DOC ###"],
    "columbia": ["PC #####", "KC ####"],
    "elektra": ["EKS-7####"],
}

_WORDS_A = (
    "Velvet",
    "Silver",
    "Paper",
    "Quiet",
    "Electric",
    "Hollow",
    "Golden",
    "Lonesome",
    "Static",
    "Northern",
    "Crystal",
    "Midnight",
    "Broken",
    "Copper",
    "Little",
    "Wild",
    "Neon",
    "Distant",
    "Glass",
    "Summer",
)
_WORDS_B = (
    "Hours",
    "Rivers",
    "Engines",
    "Saints",
    "Ghosts",
    "Lanterns",
    "Harbors",
    "Birds",
    "Machines",
    "Tigers",
    "Shadows",
    "Gardens",
    "Signals",
    "Orchards",
    "Satellites",
    "Horses",
    "Wires",
    "Islands",
)
_FIRST = (
    "Mara",
    "June",
    "Otis",
    "Lena",
    "Ruth",
    "Abel",
    "Nina",
    "Cass",
    "Theo",
    "Ida",
    "Wren",
    "Felix",
)
_LAST = (
    "Okafor",
    "Lindqvist",
    "Haddad",
    "Moreau",
    "Castillo",
    "Brandt",
    "Nakamura",
    "Reyes",
    "Quinn",
    "Adeyemi",
)
_TITLE = (
    "Morning Static",
    "Low Tide",
    "Every Window",
    "Paper Moons",
    "The Long Way Down",
    "Northern Lights",
    "Second Hand Sky",
    "Salt and Iron",
    "Far From Here",
    "Small Hours",
    "Weather Report",
    "Carry the Fire",
    "Glass Houses",
    "Radio Silence",
    "Open Country",
    "Dust Songs",
)
_LABELS = (
    "Feral Child",
    "Tin Can Records",
    "Lantern",
    "Blue Hour",
    "Outer Orbit",
    "Crane & Sons",
    "Hollow Pine",
    "Marrow",
    "Signal Fire",
    "Dial Tone",
)
_TRACK = (
    "Intro",
    "Slow Burn",
    "Ferris Wheel",
    "Highway Song",
    "Blue Static",
    "Kitchen Light",
    "Paper Boat",
    "Undertow",
    "Telephone",
    "Gold Coast",
    "Last Call",
    "Sleepwalker",
    "Riverbed",
    "Crossfade",
    "Outro",
    "Satellite",
    "Wildflower",
    "Night Drive",
    "Tin Roof",
    "Echo Lake",
)

_REVIEW_OPEN = ("great driving bass", "dreamy, spacey", "loud + fast", "mellow, good for mornings",
                "weird but fun", "gorgeous vocals", "heavy fuzz guitars", "chill jazz vibes",
                "upbeat, danceable", "dark + moody", "classic!", "lo-fi gem")  # fmt: skip
_REVIEW_PICK = ("try {t}", "play {t}", "fav: {t}", "{t} is a hit", "start w/ {t}", "{t} rules")
_REVIEW_NOTE = ("FCC clean", "no swears", "{s} side is best", "short tracks", "skip {t2}",
                "long fade on {t2}", "good segue", "")  # fmt: skip


def _norm_col(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_COLUMNS = {
    "album_id": ("id", "albumid", "catalogitemid"),
    "artist": ("artistname", "artist"),
    "title": ("albumtitle", "title", "album", "albumname"),
    "label": ("label", "labelname"),
    "code_letters": ("codeletters",),
    "code_artist_number": ("codeartistnumber",),
    "code_number": ("codenumber",),
    "catalog_number": ("catalognumber", "catno"),
    "upc": ("upc", "barcode", "ean"),
}


def load_catalog(path: Path) -> list[CatalogRow]:
    """Rows of a catalog CSV. Column names are matched loosely (`artistName`, `artist_name`
    and `Artist` all work); `id`, artist and title are required, the rest optional."""
    path = Path(path)
    if not path.is_file():
        raise BadRequest(f"catalog CSV {path} does not exist: pass --catalog with a CSV file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = {_norm_col(h): h for h in reader.fieldnames or []}
        cols: dict[str, str] = {}
        for key, names in _COLUMNS.items():
            for n in names:
                if n in header:
                    cols[key] = header[n]
                    break
        missing = [k for k in ("album_id", "artist", "title") if k not in cols]
        if missing:
            raise BadRequest(
                f"catalog CSV {path} lacks column(s) for {', '.join(missing)}: expected e.g. "
                "id, artistName, albumTitle (found: " + ", ".join(reader.fieldnames or []) + ")"
            )
        rows = []
        for lineno, raw in enumerate(reader, start=2):
            get = {k: (raw.get(c) or "").strip() or None for k, c in cols.items()}
            if not get["artist"] or not get["title"]:
                continue
            try:
                rows.append(
                    CatalogRow(
                        album_id=int(get["album_id"]),  # type: ignore[arg-type]
                        artist=get["artist"],  # type: ignore[arg-type]
                        title=get["title"],  # type: ignore[arg-type]
                        label=get.get("label"),
                        code_letters=get.get("code_letters"),
                        code_artist_number=_int_or_none(get.get("code_artist_number")),
                        code_number=_int_or_none(get.get("code_number")),
                        catalog_number=get.get("catalog_number"),
                        upc=get.get("upc"),
                    )
                )
            except (TypeError, ValueError):
                raise BadRequest(
                    f"catalog CSV {path} line {lineno}: id must be an integer, "
                    f"got {raw.get(cols['album_id'])!r}"
                ) from None
    if not rows:
        raise BadRequest(f"catalog CSV {path} has no rows with an artist and a title")
    return rows


def _int_or_none(v: str | None) -> int | None:
    try:
        return int(float(v)) if v else None
    except ValueError:
        return None


def _pick(rng: np.random.Generator, seq: tuple[str, ...] | list[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def catalog_number_for(label: str, rng: np.random.Generator) -> str:
    patterns = LABEL_PATTERNS.get(label.lower())
    if patterns is None:
        # Unknown label: its initials (or first word) as the prefix, as small labels do.
        words = re.findall(r"[A-Za-z0-9]+", label)
        prefix = "".join(w[0] for w in words).upper() if len(words) > 1 else label[:4].upper()
        prefix = re.sub(r"[^A-Z0-9]", "", prefix) or "LP"
        if len(prefix) < 2:
            prefix = (re.sub(r"[^A-Z]", "", label.upper()) + "LP")[:3]
        sep = _pick(rng, (" ", "-", " ", ""))
        patterns = [prefix + sep + "#" * int(rng.integers(2, 5))]
    pattern = _pick(rng, patterns)
    return "".join(str(int(rng.integers(10))) if c == "#" else c for c in pattern)


def make_upc(rng: np.random.Generator) -> str:
    """A UPC-A (12 digits) for most US pressings, an EAN-13 for some European ones."""
    if rng.random() < 0.75:
        body = _pick(rng, ("0", "7", "6", "8")) + "".join(str(d) for d in rng.integers(0, 10, 10))
    else:
        body = _pick(rng, ("50", "40", "87", "76")) + "".join(
            str(d) for d in rng.integers(0, 10, 10)
        )
    return body + check_digit(body)


def make_library_code(row: CatalogRow | None, rng: np.random.Generator, artist: str) -> str:
    if row is not None and row.code_letters and row.code_artist_number is not None:
        return library_code(row.code_letters, row.code_artist_number, row.code_number or 1)
    letters = re.sub(r"[^A-Z]", "", artist.upper().removeprefix("THE "))[:2] or "XX"
    return library_code(letters, int(rng.integers(1, 30)), int(rng.integers(1, 9)))


def _tracks(rng: np.random.Generator, n: int) -> list[str]:
    idx = rng.choice(len(_TRACK), size=n, replace=False)
    return [_TRACK[int(i)] for i in idx]


def _review(rng: np.random.Generator, tracks: list[str]) -> list[str]:
    t = f"{_pick(rng, ('A', 'B'))}{int(rng.integers(1, 5))}"
    lines = [_pick(rng, _REVIEW_OPEN), _pick(rng, _REVIEW_PICK).format(t=t)]
    note = _pick(rng, _REVIEW_NOTE).format(
        s=_pick(rng, ("A", "B")), t2=f"{_pick(rng, ('A', 'B'))}{int(rng.integers(1, 5))}"
    )
    if note:
        lines.append(note)
    return lines


def invented_row(rng: np.random.Generator) -> CatalogRow:
    """A record the catalog does not hold."""
    if rng.random() < 0.5:
        artist = f"{_pick(rng, _WORDS_A)} {_pick(rng, _WORDS_B)}"
        if rng.random() < 0.4:
            artist = "The " + artist
    else:
        artist = f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}"
    return CatalogRow(None, artist, _pick(rng, _TITLE), _pick(rng, _LABELS))


def make_record(row: CatalogRow, rng: np.random.Generator) -> Record:
    label = row.label or _pick(rng, _LABELS)
    tracks = _tracks(rng, int(rng.integers(6, 10)))
    half = len(tracks) // 2
    upc = row.upc if row.upc and row.upc.isdigit() and len(row.upc) in (12, 13) else make_upc(rng)
    return Record(
        album_id=row.album_id,
        artist=row.artist,
        title=row.title,
        label=label,
        catalog_number=row.catalog_number or catalog_number_for(label, rng),
        upc=upc,
        library_code=make_library_code(row, rng, row.artist),
        review=_review(rng, tracks),
        tracks_a=tracks[:half],
        tracks_b=tracks[half:],
        year=int(rng.integers(1965, 2024)),
    )


def draw_records(
    rows: list[CatalogRow], n: int, rng: np.random.Generator, not_in_catalog: float = 0.12
) -> list[Record]:
    """`n` records: catalog rows without repeats (while they last) and a share of invented
    ones. At least one invented record when n >= 4, so every set tests "no match"."""
    n_out = round(n * not_in_catalog)
    if n >= 4:
        n_out = max(1, n_out)
    out_positions = {int(i) for i in rng.choice(n, size=n_out, replace=False)} if n_out else set()
    order = rng.permutation(len(rows))
    records = []
    k = 0
    for i in range(n):
        if i in out_positions:
            row = invented_row(rng)
        else:
            row = rows[int(order[k % len(order)])]
            k += 1
        records.append(make_record(row, rng))
    return records
