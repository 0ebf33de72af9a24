"""A synthetic library catalog with the shape of a college radio station's: deterministic for a
given (n_albums, seed), written in the import CSV format (see `scanbatch.catalog.importer`).

The shape is what makes matching hard, so it is reproduced on purpose: several albums per
artist (skewed: most artists have one to three, a few have a dozen), "The ..." band names,
people filed by surname, diacritics, digits and punctuation in names, and near-duplicate titles
across artists (self-titled albums, "Greatest Hits", "Live", "Vol. 2"). Library codes follow a
station's convention: code letters are the first three letters of the filing name (surname for
a person, the name without its leading article for a band), the artist number counts artists
sharing those letters in order of arrival, the album number counts that artist's albums.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from datetime import date, timedelta
from typing import IO

from scanbatch.catalog.normalize import fold_ascii, normalize


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


CSV_COLUMNS = (
    "album_id",
    "artist",
    "title",
    "code_letters",
    "code_artist_number",
    "code_number",
    "label",
    "genre",
    "format",
    "added",
)

FIRST = _words(
    "Ana Anaïs Andrés Astrid Ben Bill Billy Björn Carla Chloé Dana Daniel David Dolly Elena "
    "Eli Emma Erik Étienne Frank François Greta Hank Hélène Ines Ingrid Isaac Jack James Jean "
    "Joan John Jonas José Josh Judy June Kai Karen Kate Kim Lars Laura Lena Léa Leon Lucinda "
    "Luis Łukasz Maria Mário Marta Max Mia Miles Nina Noël Nora Olga Omar Oscar Paul Pedro "
    "Ray Renée Rosa Ruth Sam Sara Sean Sinéad Søren Stan Sun Tom Tomás Vera Victor Wanda Yoko "
    "Zoë"
)
LAST = _words(
    "Adams Alvarez Anderson Baker Bauer Bell Berg Brown Carter Castro Clark Coleman Cruz "
    "Davis Dvořák Ellis Evans Fischer Ford García Gonçalves Gray Green Hall Hansen Harris "
    "Hayes Hill Holm Hughes Jensen Johnson Jones Kelly Kim King Klein Kowalski Lang Larsen "
    "Lee Lewis López Marsh Martin Meyer Miller Mitchell Moore Morales Müller Murphy Nash "
    "Nguyen Núñez Nyström O'Brien O'Neil Ødegaard Park Parker Pérez Price Quinn Reed Reyes "
    "Rivera Rossi Ruiz Ryan Santos Schmidt Scott Shaw Silva Smith Stone Suzuki Taylor "
    "Thompson Torres Turner Vance Vega Wagner Walker Ward Watts Weber White Wilson Wolfe Wood "
    "Young Zimmermann"
)
ADJ = _words(
    "Black Blue Bright Broken Burning Cold Crystal Dark Dead Deep Electric Empty Endless "
    "Final Frozen Gentle Giant Glass Golden Gray Green Hidden Holy Hollow Iron Last Little "
    "Lonely Lost Loud Lucky Mad Midnight Modern Neon New Northern Old Pale Paper Perfect Pink "
    "Plastic Quiet Radio Red Royal Sacred Savage Secret Silent Silver Slow Soft Southern "
    "Static Strange Sweet Tender Tiny Velvet Violent Western White Wild Wooden Young"
)
NOUN = _words(
    "Angel Arrow Bird Bone Bridge Cactus Canyon Castle Cathedral Cloud Comet Crow Crown "
    "Dancer Desert Diamond Dog Dream Drum Engine Falcon Feather Fever Field Fire Flower "
    "Forest Fox Garden Ghost Harbor Heart Horse Island Jewel Ladder Lake Light Lion Machine "
    "Mirror Moon Mountain Ocean Owl Palace Parade Planet Prophet Rabbit River Robot Rose "
    "Saint Sea Shadow Ship Signal Sister Snake Sparrow Star Stone Storm Sun Tiger Tower Train "
    "Tree Valley Velvet Wave Whale Wheel Window Wire Witch Wolf"
)
PLACE = _words(
    "Berlin|Brooklyn|Budapest|Chicago|Detroit|Havana|Kyoto|Lagos|Lisbon|Memphis|Montréal|"
    "Nashville|Oslo|Paris|Reykjavík|São Paulo|Tokyo|Zürich|the Fillmore|the Roxy|the Apollo",
    "|",
)
PHRASE = _words(
    "Don't Look Back|What's Going On?|Here Comes the Night|All Tomorrow's Parties|"
    "Songs for Nobody|Nothing Lasts Forever|Hold On!|Say It Loud|Where Did You Sleep|"
    "Let It Ride|Come Home|Keep Moving|Slow Down, Baby|Not Yet|Why Not?|It's a Long Way|"
    "Move On Up|Tell Me Everything|We Are Here|Wait for Me|Good Night, Sweet|Ready or Not|"
    "One More Time",
    "|",
)
GENRES = {  # station-like proportions (rock-heavy college radio library)
    "Rock": 30, "Pop": 9, "Electronic": 10, "Hip-Hop": 9, "Jazz": 8, "Folk": 7, "Country": 5,
    "Blues": 4, "Soul/R&B": 5, "Reggae": 3, "Classical": 3, "World": 4, "Experimental": 3,
}  # fmt: skip
FORMATS = {"LP": 62, '7"': 14, '12"': 10, "CD": 12, "Cassette": 2}
LABEL_WORDS = _words(
    "Arrow Basement Blue Cellar Circle Coast Driftwood Echo Factory Ghost Harbor Kitchen "
    "Lantern Matador Meadow Moon North Paper Parlor Polar Rooftop Signal Smoke Sparrow Static "
    "Sun Thrill Tiger Tin Velvet Warehouse Wax Yard"
)
LABEL_SUFFIX = ("Records", "Recordings", "Music", "Sound", "Tapes", "Label", "Discs")

_ROMAN = ("II", "III", "IV", "V")


def code_letters_for(filing_name: str) -> str:
    """A library's code letters: the first three letters of the filing name, ASCII, upper case,
    a leading article skipped ("The Byrds" -> "BYR"). Names without letters keep their digits."""
    folded = fold_ascii(filing_name).upper()
    folded = re.sub(r"^(THE|A|AN)\s+", "", folded)
    letters = re.sub(r"[^A-Z]", "", folded)
    if not letters:
        letters = re.sub(r"[^0-9]", "", folded) or "X"
    return letters[:3]


def _weighted(rng: random.Random, table: dict[str, int]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    roll = rng.random()
    if roll < 0.08:
        first = f"{first} {rng.choice('ABCDEFGHJKLMRST')}."
    elif roll < 0.12:
        last = f"{last}-{rng.choice(LAST)}"
    name = f"{first} {last}"
    if rng.random() < 0.06:
        name += rng.choice((" Trio", " Quartet", " & His Orchestra", " Band", " Jr."))
    return name, last


def _band(rng: random.Random) -> str:
    a, n, n2 = rng.choice(ADJ), *rng.sample(NOUN, 2)
    roll = rng.random()
    if roll < 0.30:
        return f"The {a} {n}s"
    if roll < 0.42:
        return f"The {n}s"
    if roll < 0.57:
        return f"{a} {n}"
    if roll < 0.67:
        return f"{n} {n2}"
    if roll < 0.74:
        return f"{n} & the {a} {n2}s"
    if roll < 0.80:
        return f"{n}{n2.lower()}"
    if roll < 0.86:
        return f"{a} {n} {rng.randint(2, 999)}"
    if roll < 0.90:
        return f"{n} of {n2}s"
    if roll < 0.94:
        return f"{fold_ascii(a).upper()} {fold_ascii(n).upper()}!"
    if roll < 0.97:
        return f"{a}-{n}"
    return f"{rng.choice(FIRST)} {rng.choice(['and', '&'])} the {n}s"


def _title(rng: random.Random, artist: str) -> str:
    roll = rng.random()
    a, n, n2 = rng.choice(ADJ), rng.choice(NOUN), rng.choice(NOUN)
    if roll < 0.04:
        return artist  # self-titled
    if roll < 0.06:
        return "Greatest Hits"
    if roll < 0.08:
        return "Live"
    if roll < 0.10:
        return f"Live at {rng.choice(PLACE)}"
    if roll < 0.12:
        return rng.choice(("Demos", "Singles", "EP", "Untitled", "Best Of", "Rarities"))
    if roll < 0.30:
        return f"{a} {n}"
    if roll < 0.40:
        return f"The {a} {n}"
    if roll < 0.48:
        return f"{n}s of the {a} {n2}"
    if roll < 0.58:
        return rng.choice(PHRASE)
    if roll < 0.64:
        return f"{n} {rng.choice(_ROMAN)}" if rng.random() < 0.5 else f"Vol. {rng.randint(1, 9)}"
    if roll < 0.69:
        return str(rng.randint(1960, 2024))
    if roll < 0.75:
        return rng.choice(PLACE).replace("the ", "The ")
    if roll < 0.82:
        return f"{a} {n}, {a2}" if (a2 := rng.choice(ADJ)) != a else f"{a} {n}s"
    if roll < 0.90:
        return f"{n}"
    return f"{rng.choice(PHRASE)} ({a} {n})"


def _label(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return "Self-released"
    return f"{rng.choice(LABEL_WORDS)} {rng.choice(LABEL_SUFFIX)}"


def _album_count(rng: random.Random) -> int:
    # Skewed: about half the artists have one album, a few have more than ten.
    return min(1 + int(rng.expovariate(1 / 2.6)), 20)


def generate_catalog(n_albums: int, seed: int = 0) -> list[dict[str, str]]:
    """`n_albums` rows in the import CSV format (every value a string), ordered by album_id."""
    if n_albums < 0:
        raise ValueError("n_albums must be >= 0")
    rng = random.Random(seed)
    labels = sorted({_label(rng) for _ in range(max(30, n_albums // 150))})
    artists: list[tuple[str, str]] = []  # (display name, filing name)
    used: set[str] = set()
    albums: list[tuple[int, str]] = []  # (artist index, title)
    while len(albums) < n_albums:
        if rng.random() < 0.4:
            name, filing = _person(rng)
        else:
            name = filing = _band(rng)
        if normalize(name) in used:  # "Crystal Castle" and "Crystal-Castle" would be one name
            continue
        used.add(normalize(name))
        index = len(artists)
        artists.append((name, filing))
        titles: set[str] = set()
        for _ in range(min(_album_count(rng), n_albums - len(albums))):
            title = _title(rng, name)
            if title.casefold() in titles:
                continue
            titles.add(title.casefold())
            albums.append((index, title))
    rng.shuffle(albums)  # arrival order: an artist's albums reach the library over the years

    per_letters: Counter[str] = Counter()
    artist_code: dict[int, tuple[str, int]] = {}
    album_number: Counter[int] = Counter()
    artist_label = {i: rng.choice(labels) for i in range(len(artists))}
    day, album_id = date(1984, 9, 1), 1000
    span = max(1, (date(2025, 6, 1) - day).days)
    step = span / max(1, n_albums)
    rows = []
    for i, (artist_index, title) in enumerate(albums):
        name, filing = artists[artist_index]
        if artist_index not in artist_code:
            letters = code_letters_for(filing)
            per_letters[letters] += 1
            artist_code[artist_index] = (letters, per_letters[letters])
        letters, number = artist_code[artist_index]
        album_number[artist_index] += 1
        album_id += rng.randint(1, 3)  # ids have gaps, as in a catalog with withdrawn items
        label = artist_label[artist_index] if rng.random() < 0.7 else rng.choice(labels)
        rows.append(
            {
                "album_id": str(album_id),
                "artist": name,
                "title": title,
                "code_letters": letters,
                "code_artist_number": str(number),
                "code_number": str(album_number[artist_index]),
                "label": label,
                "genre": _weighted(rng, GENRES),
                "format": _weighted(rng, FORMATS),
                "added": (day + timedelta(days=int(i * step))).isoformat(),
            }
        )
    return rows


def write_csv(rows: list[dict[str, str]], out: IO[str]) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
