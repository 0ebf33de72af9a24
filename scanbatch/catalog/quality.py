"""A query set with known answers, for measuring match quality (tests and benchmarks).

Kinds: `exact`, `typo` (one or two keyboard slips), `ocr` (upper case, lost accents and
punctuation, 0/O 1/l/I 5/S 8/B rn/m confusions), `reordered` (artist and title swapped, or
"Surname, First"), `title_only`, `artist_only` and `not_in_catalog` (albums of another generated
catalog, some by artists the catalog has, whose artist+title the catalog does not have).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from scanbatch.catalog.generate import generate_catalog
from scanbatch.catalog.normalize import fold_ascii, normalize

KINDS = ("exact", "typo", "ocr", "reordered", "title_only", "artist_only", "not_in_catalog")
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"
_OCR_SWAPS = {"o": "0", "O": "0", "l": "1", "I": "l", "i": "l", "s": "5", "S": "5", "B": "8",
              "m": "rn", "w": "vv"}  # fmt: skip


@dataclass(frozen=True)
class Query:
    kind: str
    artist: str | None
    title: str | None
    expected: int | None  # album id, None when the right answer is "no match"


def _typo(rng: random.Random, text: str) -> str:
    positions = [i for i, c in enumerate(text) if c.isalpha()]
    if len(positions) < 4:
        return text
    i = rng.choice(positions[1:])
    op = rng.randrange(4)
    if op == 0:
        return text[:i] + rng.choice(_KEYBOARD) + text[i + 1 :]
    if op == 1:
        return text[:i] + text[i + 1 :]
    if op == 2:
        return text[:i] + rng.choice(_KEYBOARD) + text[i:]
    return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]


def _ocr(rng: random.Random, text: str) -> str:
    text = fold_ascii(text)
    if rng.random() < 0.7:
        text = text.upper()
    out = []
    for c in text:
        if c in _OCR_SWAPS and rng.random() < 0.35:
            out.append(_OCR_SWAPS[c])
        elif not c.isalnum() and c != " " and rng.random() < 0.6:
            continue  # punctuation lost
        else:
            out.append(c)
    return "".join(out)


def _reorder(rng: random.Random, artist: str, title: str) -> tuple[str, str]:
    words = artist.split()
    if len(words) >= 2 and rng.random() < 0.5:
        if words[0].lower() == "the":
            return f"{' '.join(words[1:])}, The", title
        return f"{words[-1]}, {' '.join(words[:-1])}", title
    return title, artist


def make_queries(rows: list[dict[str, str]], per_kind: int, seed: int = 0) -> list[Query]:
    """`per_kind` queries of every kind drawn from the catalog `rows` (generator format)."""
    rng = random.Random(seed)
    sample = rng.sample(rows, min(len(rows), per_kind))
    queries: list[Query] = []
    for row in sample:
        artist, title, album = row["artist"], row["title"], int(row["album_id"])
        queries.append(Query("exact", artist, title, album))
        t_artist, t_title = artist, title
        while (t_artist, t_title) == (artist, title) and (len(artist) + len(title)) > 10:
            roll = rng.random()
            if roll < 0.8:
                t_artist = _typo(rng, artist)
            if roll > 0.4:
                t_title = _typo(rng, title)
        queries.append(Query("typo", t_artist, t_title, album))
        queries.append(Query("ocr", _ocr(rng, artist), _ocr(rng, title), album))
        queries.append(Query("reordered", *_reorder(rng, artist, title), album))
        queries.append(Query("title_only", None, title, album))
        queries.append(Query("artist_only", artist, None, album))
    known = {(normalize(r["artist"]), normalize(r["title"])) for r in rows}
    others = generate_catalog(per_kind * 3, seed + 7919)
    rng.shuffle(others)
    absent = [r for r in others if (normalize(r["artist"]), normalize(r["title"])) not in known]
    queries.extend(
        Query("not_in_catalog", r["artist"], r["title"], None) for r in absent[:per_kind]
    )
    return queries


@dataclass
class KindScore:
    total: int = 0
    answerable: int = 0
    matched: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.matched if self.matched else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.answerable if self.answerable else 1.0


def score_queries(matcher, queries: list[Query]) -> dict[str, KindScore]:
    """Per kind (and "overall"): a match is correct when it is the expected album."""
    scores = {kind: KindScore() for kind in (*KINDS, "overall")}
    for q in queries:
        best = matcher.best(q.artist, q.title)
        for key in (q.kind, "overall"):
            s = scores[key]
            s.total += 1
            s.answerable += q.expected is not None
            if best is not None:
                s.matched += 1
                s.correct += best.album_id == q.expected
    return scores
