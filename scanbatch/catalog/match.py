"""Match a scanned record against the catalog.

Order of evidence: the context's `catalogItemId` when the catalog has it; else artist and title
from the context; else from the extraction (context values fill what the extraction missed).

Scoring (0..1). Artist and title are compared as OCR skeletons (`normalize.skeleton`).
Candidates are found with rapidfuzz's Indel ratio (fast, forgiving) over the keys that a
trigram index says share the most with the query (no scan of every key), then scored with the
normalised optimal-string-alignment similarity (1 - edits / length), which is stricter on
substitutions: "Emma Ward" vs "Sean Ward" is 0.56, one typo in it 0.89. The artist is also
compared by sorted words ("Dylan, Bob"). A pair scores
``0.8 * min(artist, title) + 0.2 * max(artist, title)``: the weaker field dominates, so the
right artist with another album's title (the record is not in the catalog yet) or the right
title by another artist ("Greatest Hits") stays below the minimum. Fields read the wrong way
round are tried swapped at a small discount. A title alone matches only when it is long, near
exact and names exactly one album (scaled by 0.88, so it needs a similarity >= 0.932 at the
default minimum), or when it is read exactly, names exactly one album and has two words and
at least 8 characters (no other title is that close); a title shared by several albums needs
the artist. An artist alone never matches (it names a discography, not a
record). Ties go to the lowest album id. `best` ranks only the candidates that can still reach
the minimum (`_PairScorer`): the album chosen, and its score, are those of ranking them all,
which `candidates` still does for display.

Everything here is plain Python and numpy data built once from the snapshot and only read
afterwards (each query's scratch state is its own), so one matcher is shared by the kernel's
item threads without locks.
"""

from __future__ import annotations

import logging
import os
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import duckdb
import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from scanbatch.catalog.normalize import normalize, ocr_fold, skeleton, sort_tokens
from scanbatch.catalog.schema import VIEW, VIEW_COLUMNS
from scanbatch.catalog.snapshot import read_snapshot
from scanbatch.models import CatalogMatch, Extraction, ScanContext
from scanbatch.settings import Settings

log = logging.getLogger(__name__)


class Matcher(Protocol):
    """Everything asked of the catalog by its callers (`CatalogMatcher` is the one
    implementation; tests stand in for it): a job's match, the matched album for its report,
    and the lookups an extractor reading text lines uses to tell artist from title."""

    def match(self, context: ScanContext | None, extraction: Extraction) -> CatalogMatch | None:
        """The catalog album this record is, or None when nothing is close enough."""

    def get(self, album_id: int) -> dict[str, Any] | None:
        """The snapshot row of the album (snake_case `matchedAlbum` fields), None if unknown."""

    def __len__(self) -> int:
        """How many albums the catalog holds."""

    def best(self, artist: str | None, title: str | None) -> Candidate | None:
        """The best album for these fields if it clears the minimum score, else None."""

    def best_pair(self, lines: Sequence[str]) -> LinePair | None:
        """Which of these text lines is the artist and which the title, if any pair matches."""


# The settings object holds the tuned value (SCANBATCH_MATCH_MIN_SCORE; see docs/catalog.md).
DEFAULT_MIN_SCORE: float = Settings.model_fields["match_min_score"].default
SWAP_FACTOR = 0.97  # artist and title read the wrong way round: slightly less certain
SORTED_FACTOR = 0.98  # words reordered
TITLE_ONLY_FACTOR = 0.88
TITLE_ONLY_MIN_CHARS = 10
EXACT_TITLE_MIN_CHARS = 8
_ARTIST_LIMIT = 8
_TITLE_LIMIT = 8
_CUTOFF = 55.0
DIGIT_MISMATCH_FACTOR = 0.85
# A title many albums share ("Greatest Hits", "Live") is weak evidence: the artist must carry it.
COMMON_TITLE_PENALTY = 0.04
COMMON_TITLE_ALBUMS = 3
_DIGITS = re.compile(r"[^0-9]")
_MERGES = re.compile("rn|vv")  # what `ocr_fold` turns into one letter
_EARLY_EXIT = 0.9
_COMMON_TITLE = 40  # a title shared by more albums than this is found through the artist


class Candidate(NamedTuple):
    album_id: int
    score: float
    artist_score: float
    title_score: float


class LinePair(NamedTuple):
    """Which OCR line is the artist and which the title, and how sure."""

    artist: str
    title: str
    score: float


def similarity(a: str, b: str) -> float:
    """Of two skeletons: 1 - (edits, a transposition counting one) / longer length. Digits
    that differ ("Vol. 3" vs "Vol. 9", "1969" vs "1996") are a different record, not a typo;
    the digits OCR confuses with letters are already letters in a skeleton."""
    sim = OSA.normalized_similarity(a, b)
    if sim < 1.0 and _DIGITS.sub("", a) != _DIGITS.sub("", b):
        sim *= DIGIT_MISMATCH_FACTOR
    return sim


def _variants(key: str) -> tuple[str, ...]:
    """The skeleton, and without a leading "the" when that leaves a word of some length
    ("theapollo" -> "apollo"); both are tried, so "thelonious" still matches itself."""
    return (key, key[3:]) if key.startswith("the") and len(key) >= 7 else (key,)


def pair_score(artist: float, title: float) -> float:
    low, high = min(artist, title), max(artist, title)
    return 0.8 * low + 0.2 * high


@dataclass(frozen=True)
class _Query:
    artist: str  # normalised (`normalize`), "" when absent
    title: str


# -- candidate search -------------------------------------------------------------------------

# Trigrams of a key padded with a space, each a number: keys are `normalize`d, so their
# characters are 0-9, a-z and space; anything else shares one code.
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz "
_SYMBOLS = len(_ALPHABET) + 1
_GRAMS = _SYMBOLS**3
_SYMBOL = np.full(256, len(_ALPHABET), dtype=np.int64)
_SYMBOL[np.frombuffer(_ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(_ALPHABET))
_SYMBOL_OF = {c: i for i, c in enumerate(_ALPHABET)}
_OTHER = len(_ALPHABET)
# Enough that the keys a full scan would rank first are among them (the equivalence test
# compares both on the quality set); a block this size costs rapidfuzz microseconds.
_BLOCK = 128

Hit = tuple[str, float, int]  # (key, fuzz.ratio, index), as `process.extract` returns


def _encode(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(gram codes, owning key) of every trigram of every padded key, duplicates kept."""
    padded = [f" {k} " for k in keys]
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    symbols = _SYMBOL[np.frombuffer("".join(padded).encode("ascii", "replace"), dtype=np.uint8)]
    owner = np.repeat(np.arange(len(padded), dtype=np.int64), lengths)
    codes = symbols[:-2] * _SYMBOLS * _SYMBOLS + symbols[1:-1] * _SYMBOLS + symbols[2:]
    inside = owner[:-2] == owner[2:]  # a gram must not span two keys
    return codes[inside], owner[:-2][inside]


class _Scan:
    """Every key compared with the query: the search before the index (the baseline)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys

    def extract(self, query: str, limit: int, score_cutoff: float) -> list[Hit]:
        return process.extract(
            query, self._keys, scorer=fuzz.ratio, limit=limit, score_cutoff=score_cutoff
        )


class _GramIndex(_Scan):
    """Trigram postings over the keys. A query counts the grams it shares with each key
    (numpy over the postings of its own grams, not a scan of every key), keeps the `_BLOCK`
    keys with the highest share, and ranks only those with the same scorer a full scan uses.
    A key that scores well shares most of its grams with the query, so it is in the block."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        n = len(keys)
        codes, owners = _encode(keys)
        # Grouped by gram; a stable sort keeps each gram's keys in key order, so a gram a key
        # holds twice is two neighbours, and one posting per (gram, key) is kept.
        order = np.argsort(codes, kind="stable")
        codes, owners = codes[order], owners[order]
        first = np.ones(len(codes), dtype=bool)
        first[1:] = (codes[1:] != codes[:-1]) | (owners[1:] != owners[:-1])
        codes, owners = codes[first], owners[first]
        # As intp: `np.bincount` converts any other integer type first, a copy per query.
        self._postings = owners.astype(np.intp)
        offsets = np.zeros(_GRAMS + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=_GRAMS), out=offsets[1:])
        # Read a few dozen times per query: an array.array yields Python ints, which slice
        # numpy faster than numpy's own scalars do (and it is as compact as the ndarray).
        self._offsets = array("q", offsets.tobytes())
        # Compact (a quarter of float64): the Dice below reads it at every key sharing a gram,
        # with the caches cold between items; the division gives the same floats either way.
        self._sizes = np.bincount(owners, minlength=n).astype(np.uint16)
        self._key_array = np.array(keys, dtype=object)

    def extract(self, query: str, limit: int, score_cutoff: float) -> list[Hit]:
        symbols = [_SYMBOL_OF.get(c, _OTHER) for c in f" {query} "]
        codes = {
            (a * _SYMBOLS + b) * _SYMBOLS + c
            for a, b, c in zip(symbols, symbols[1:], symbols[2:], strict=False)
        }
        offsets = self._offsets
        parts = [self._postings[offsets[g] : offsets[g + 1]] for g in codes]
        if not any(len(part) for part in parts):
            return []
        shared = np.bincount(np.concatenate(parts), minlength=len(self._keys))
        block = np.flatnonzero(shared > 0)  # numpy finds a bool's non-zeros ~3x faster
        if len(block) > _BLOCK:
            # By the Dice coefficient of the gram sets, not the count of shared grams: a short
            # key ("storm" for "storms") must not lose to every long key holding the query.
            dice = shared[block] / (self._sizes[block] + float(len(codes)))
            block = np.sort(block[np.argpartition(-dice, _BLOCK)[:_BLOCK]])
        # In key order, so that ties rank as they do in a full scan.
        hits = process.extract(
            query,
            self._key_array[block].tolist(),
            scorer=fuzz.ratio,
            limit=limit,
            score_cutoff=score_cutoff,
        )
        return [(key, score, int(block[j])) for key, score, j in hits]


class _Field:
    """One text column (a key per artist or per album) with the digits of each text."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.digits = [_DIGITS.sub("", t) for t in texts]


class _Columns:
    def __init__(self, m: CatalogMatcher) -> None:
        self.common_title = [
            len(m._title_albums[ti]) > COMMON_TITLE_ALBUMS for ti in m._album_title_index
        ]
        self.artist_key = _Field(m._artist_keys)
        self.artist_norm = _Field(m._artist_norm)
        self.artist_sorted = _Field(m._artist_sorted)
        self.title_key = _Field(m._album_title)
        self.title_norm = _Field(m._album_title_norm)
        # When the plain form is worth comparing besides the key (see `_PairScorer`).
        self.artist_merges = [_MERGES.search(t) is not None for t in m._artist_norm]
        self.title_merges = [_MERGES.search(t) is not None for t in m._album_title_norm]
        self.artist_sorted_is_key = [
            s == k for s, k in zip(m._artist_sorted, m._artist_keys, strict=True)
        ]


def _forms(texts: Iterable[str]) -> list[tuple[str, str]]:
    """Each query text with its digits, worked out once per query."""
    return [(t, _DIGITS.sub("", t)) for t in dict.fromkeys(texts)]


def _best_similarity(forms: list[tuple[str, str]], field: _Field, row: int) -> float:
    """The highest `similarity` of any query form with the field's text at `row`."""
    text, digits = field.texts[row], field.digits[row]
    best = 0.0
    for query, query_digits in forms:
        sim = OSA.normalized_similarity(query, text)
        if sim < 1.0 and query_digits != digits:
            sim *= DIGIT_MISMATCH_FACTOR
        if sim > best:
            best = sim
    return best


class _PairScorer:
    """Scores albums against one artist+title query (both orientations' variants fixed).

    Profiling the slow kinds (reordered, not_in_catalog) showed most of `_score`'s time was
    call overhead: five `cdist` calls, `np.unique` and a `Candidate` per album, for blocks of a
    few dozen albums. Here each artist and each title text is compared once per query
    (memoised), with scalar rapidfuzz calls, and `floor` drops what cannot reach it before the
    other field is even compared: a pair scores at most ``(0.8 * artist + 0.2) * factor`` (the
    title at 1, the penalty and the self-titled factor only lower it), and the same with the
    title. `best` passes the minimum score (at most the early exit's threshold): an album
    below it can neither be returned nor trigger the early exit, so the album chosen is the
    one an unpruned ranking puts first."""

    def __init__(
        self,
        m: CatalogMatcher,
        a_variants: list[tuple[str, str]],
        t_variants: list[tuple[str, str]],
        self_titled: bool,
        factor: float,
        floor: float,
    ) -> None:
        self._m = m
        self._columns = m._columns
        # Both the plain and the OCR-folded forms: folding helps OCR errors but can turn a
        # keyboard typo into a bigger difference ("southergn" vs "southem").
        self._a_key = _forms(k for _, k in a_variants)
        self._a_norm = _forms(n for n, _ in a_variants)
        self._a_sorted = _forms(sort_tokens(k) for _, k in a_variants)
        self._t_key = _forms(k for _, k in t_variants)
        self._t_norm = _forms(n for n, _ in t_variants)
        self._self_titled = self_titled
        self._factor = factor
        self._floor = floor
        self._artist_sims: dict[int, float] = {}
        self._title_sims: dict[str, float] = {}
        # Comparisons that cannot raise the maximum are skipped (the similarities were ~half
        # of the scoring's time). Without "rn"/"vv" on either side, the key is the plain form
        # with some letters mapped alike, which never adds an edit and keeps the length, and
        # only drops digits, so a digit mismatch of the keys is one of the plain forms too:
        # the key's similarity is at least the plain form's. Words already in sorted order on
        # both sides make the sorted comparison the key's, discounted.
        self._a_merges = any(_MERGES.search(n) for n, _ in a_variants)
        self._t_merges = any(_MERGES.search(n) for n, _ in t_variants)
        self._a_sorted_is_key = all(sort_tokens(k) == k for _, k in a_variants)

    def _artist_similarity(self, ai: int) -> float:
        sim = self._artist_sims.get(ai)
        if sim is None:
            c = self._columns
            sim = _best_similarity(self._a_key, c.artist_key, ai)
            if self._a_merges or c.artist_merges[ai]:
                sim = max(sim, _best_similarity(self._a_norm, c.artist_norm, ai))
            if not (self._a_sorted_is_key and c.artist_sorted_is_key[ai]):
                sorted_sim = _best_similarity(self._a_sorted, c.artist_sorted, ai)
                sim = max(sim, sorted_sim * SORTED_FACTOR)
            self._artist_sims[ai] = sim
        return sim

    def _title_similarity(self, position: int) -> float:
        c = self._columns
        norm = c.title_norm.texts[position]  # the key is its fold: the norm decides both
        sim = self._title_sims.get(norm)
        if sim is None:
            sim = _best_similarity(self._t_key, c.title_key, position)
            if self._t_merges or c.title_merges[position]:
                sim = max(sim, _best_similarity(self._t_norm, c.title_norm, position))
            self._title_sims[norm] = sim
        return sim

    def by_artist(self, artists: Iterable[int]) -> list[Candidate]:
        """The albums of these artists that reach the floor, best first, ties to the lowest
        id. An artist too far from the query drops all its albums at once."""
        m, out = self._m, []
        for ai in artists:
            a_sim = self._artist_similarity(ai)
            if (0.8 * a_sim + 0.2) * self._factor < self._floor:
                continue
            for position in m._artist_albums[ai]:
                self._add(out, position, a_sim, self._title_similarity(position))
        out.sort(key=_order)
        return out

    def by_title(self, titles: Iterable[int], skip_artists: set[int]) -> list[Candidate]:
        """The same for the albums of these titles, except those of `skip_artists` (already
        ranked): few titles, many artists, so the (memoised) title decides most albums
        without comparing the artist."""
        m, out = self._m, []
        for ti in titles:
            for position in m._title_albums[ti]:
                ai = m._album_artist[position]
                if ai in skip_artists:
                    continue
                t_sim = self._title_similarity(position)
                if (0.8 * t_sim + 0.2) * self._factor < self._floor:
                    continue
                self._add(out, position, self._artist_similarity(ai), t_sim)
        out.sort(key=_order)
        return out

    def _add(self, out: list[Candidate], position: int, a_sim: float, t_sim: float) -> None:
        low, high = (a_sim, t_sim) if a_sim < t_sim else (t_sim, a_sim)
        score = 0.8 * low + 0.2 * high  # `pair_score`
        if self._columns.common_title[position]:
            score -= COMMON_TITLE_PENALTY
        if self._self_titled:  # one name on the cover: artist and title are one evidence
            score *= low
        score *= self._factor
        if score >= self._floor:
            out.append(Candidate(self._m._ids[position], score, a_sim, t_sim))


class CatalogMatcher:
    def __init__(
        self,
        rows: Iterable[Sequence[Any]],
        min_score: float = DEFAULT_MIN_SCORE,
        *,
        baseline: bool = False,
    ) -> None:
        """`rows` in `schema.VIEW_COLUMNS` order (id, artist_name, album_title, ...).
        `baseline=True` is the matcher before the candidate index (issue 14): full scans, every
        candidate ranked (no pruning below the minimum) and the stricter title-only rule, kept
        as the benchmark's baseline and the equivalence test's reference."""
        self.min_score = min_score
        self._albums: dict[int, tuple] = {}
        self._ids: list[int] = []
        self._album_artist: list[int] = []
        self._album_title: list[str] = []
        self._album_title_norm: list[str] = []
        self._artist_norm: list[str] = []
        self._album_title_index: list[int] = []
        self._artist_keys: list[str] = []
        self._artist_sorted: list[str] = []
        self._artist_albums: list[list[int]] = []
        self._title_keys: list[str] = []
        self._title_albums: list[list[int]] = []
        self._pairs: dict[tuple[str, str], list[int]] = {}
        artist_index: dict[str, int] = {}
        title_index: dict[str, int] = {}
        skeleton_cache: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: r[0]):
            album_id, artist, title = row[0], row[1], row[2]
            self._albums[album_id] = tuple(row)
            position = len(self._ids)
            self._ids.append(album_id)
            a_norm = skeleton_cache.get(artist)
            if a_norm is None:
                a_norm = skeleton_cache[artist] = normalize(artist)
            a_key = ocr_fold(a_norm)
            t_norm = normalize(title)
            t_key = ocr_fold(t_norm)
            ai = artist_index.get(a_key)
            if ai is None:
                ai = artist_index[a_key] = len(self._artist_keys)
                self._artist_keys.append(a_key)
                self._artist_sorted.append(sort_tokens(a_key))
                self._artist_norm.append(a_norm)
                self._artist_albums.append([])
            self._artist_albums[ai].append(position)
            ti = title_index.get(t_key)
            if ti is None:
                ti = title_index[t_key] = len(self._title_keys)
                self._title_keys.append(t_key)
                self._title_albums.append([])
            self._title_albums[ti].append(position)
            self._pairs.setdefault((a_key, t_key), []).append(position)
            self._album_artist.append(ai)
            self._album_title_index.append(ti)
            self._album_title.append(t_key)
            self._album_title_norm.append(t_norm)
        self._artist_index = artist_index
        self._title_index = title_index
        # The same fields as arrays, for scoring a block of candidates in one rapidfuzz call.
        self._columns = _Columns(self)
        search = _Scan if baseline else _GramIndex
        self._artist_search = search(self._artist_keys)
        self._sorted_search = search(self._artist_sorted)
        self._title_search = search(self._title_keys)
        self._baseline = baseline

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_parquet(
        cls, path: Path | str, min_score: float = DEFAULT_MIN_SCORE, *, baseline: bool = False
    ) -> CatalogMatcher:
        return cls(read_snapshot(Path(path)), min_score, baseline=baseline)

    @classmethod
    def from_connection(
        cls, con: duckdb.DuckDBPyConnection, min_score: float = DEFAULT_MIN_SCORE
    ) -> CatalogMatcher:
        rows = con.execute(f"SELECT {', '.join(VIEW_COLUMNS)} FROM {VIEW}").fetchall()
        return cls(rows, min_score)

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, album_id: int) -> dict[str, Any] | None:
        """The snapshot row (snake_case `matchedAlbum` fields), None when unknown."""
        row = self._albums.get(album_id)
        return dict(zip(VIEW_COLUMNS, row, strict=True)) if row is not None else None

    # -- the Matcher protocol -----------------------------------------------------------

    def match(self, context: ScanContext | None, extraction: Extraction) -> CatalogMatch | None:
        note = None
        if context is not None and context.catalog_item_id is not None:
            if context.catalog_item_id in self._albums:
                return CatalogMatch(context.catalog_item_id, 1.0, "catalogItemId")
            note = f"catalogItemId {context.catalog_item_id} is not in the catalog; ignored"
            log.warning(note)
        ctx_artist = context.artist_name if context else None
        ctx_title = context.album_title if context else None
        attempts = []
        if ctx_artist or ctx_title:
            attempts.append(("context", ctx_artist, ctx_title))
        ex_artist = extraction.value("artist_name") or ctx_artist
        ex_title = extraction.value("album_title") or ctx_title
        if (ex_artist, ex_title) != (ctx_artist, ctx_title) and (ex_artist or ex_title):
            attempts.append(("extraction", ex_artist, ex_title))
        for method, artist, title in attempts:
            best = self.best(artist, title)
            if best is not None:
                return CatalogMatch(best.album_id, round(best.score, 4), method, note)
        # No album, but the unknown id is still reported with the result.
        return CatalogMatch(None, 0.0, "catalogItemId", note) if note else None

    # -- matching by fields -------------------------------------------------------------

    def best(self, artist: str | None, title: str | None) -> Candidate | None:
        """The best album for these fields if it clears `min_score`, else None."""
        query = _Query(normalize(artist), normalize(title))
        found = self._best(query)
        if found is None:
            # OCR may glue a leading "The" to the next word ("THESEAS"), which normalising
            # then cannot strip as an article: try once more without it.
            unglued = _Query(_variants(query.artist)[-1], _variants(query.title)[-1])
            if unglued != query:
                found = self._best(unglued)
        return found

    def _best(self, query: _Query) -> Candidate | None:
        # Only albums that can reach the minimum are ranked (see `_PairScorer`); the baseline
        # ranks them all, so comparing the two checks that pruning never changes the choice.
        floor = -1.0 if self._baseline else self.min_score
        if query.artist and query.title:
            ranked = self._rank_pair(query, floor=floor)
            # Swapping one name read as both fields (a self-titled record) ranks the same
            # albums lower: it cannot reach the minimum when the straight reading did not.
            swap = query.artist != query.title or self._baseline
            if swap and (not ranked or ranked[0].score < self.min_score):
                swapped = self._rank_pair(_Query(query.title, query.artist), SWAP_FACTOR, floor)
                ranked = sorted(ranked + swapped, key=_order)
        elif query.title:
            ranked = self._rank_title_only(ocr_fold(query.title), floor=floor)
        else:
            return None  # an artist alone names a discography, not a record
        if ranked and ranked[0].score >= self.min_score:
            return ranked[0]
        return None

    def candidates(
        self, artist: str | None, title: str | None, limit: int = 5
    ) -> list[dict[str, Any]]:
        """Ranked candidates whatever their score (for display and for OCR line assignment):
        the view's fields plus `score`, `artist_score`, `title_score`."""
        query = _Query(normalize(artist), normalize(title))
        if query.artist and query.title:
            ranked = self._rank_pair(query)
            ranked += self._rank_pair(_Query(query.title, query.artist), SWAP_FACTOR)
            ranked = _dedupe(sorted(ranked, key=_order))
        elif query.title:
            ranked = self._rank_title_only(ocr_fold(query.title))
        elif query.artist:
            ranked = self._rank_artist_only(ocr_fold(query.artist))
        else:
            ranked = []
        out = []
        for c in ranked[:limit]:
            row = self.get(c.album_id) or {}
            out.append(
                row
                | {"score": c.score, "artist_score": c.artist_score, "title_score": c.title_score}
            )
        return out

    def best_pair(self, lines: Sequence[str]) -> LinePair | None:
        """Which of these OCR lines is the artist and which the title: the pair of lines
        (possibly the same line, for a self-titled record) that best matches one catalog album,
        when it clears `min_score`."""
        # Each line with its skeleton and, when OCR glued a leading "The" to the next word
        # ("TheApollo"), also without it: skeletons drop a leading "the " word.
        keys: list[tuple[str, tuple[str, ...]]] = []
        seen = set()
        for line in lines:
            key = skeleton(line)
            if len(key) >= 2 and key not in seen:
                seen.add(key)
                keys.append((line, _variants(key)))
        keys = keys[:40]
        # Best two-line pair and best self-titled reading (one line as artist and title), kept
        # apart: a cover that shows the artist above an unmatched title line ("The Red Jewels"
        # / "TheApollo") would otherwise read as the band's self-titled album, a wrong match.
        # A distinct pair that clears the minimum wins; the self-titled reading is the fallback.
        best_of: dict[bool, tuple[float, int, int, int]] = {}  # (score, -album id, i, j)
        for i, (_, a_keys) in enumerate(keys):
            artists = {
                ai
                for a_key in a_keys
                for _, _, ai in self._artist_search.extract(a_key, limit=5, score_cutoff=70)
            }
            for ai in sorted(artists):
                a_sim = max(similarity(k, self._artist_keys[ai]) for k in a_keys)
                for position in self._artist_albums[ai]:
                    t_key = self._album_title[position]
                    for j, (_, line_keys) in enumerate(keys):
                        t_sim = max(similarity(k, t_key) for k in line_keys)
                        candidate = (pair_score(a_sim, t_sim), -self._ids[position], i, j)
                        if candidate > best_of.get(i == j, (-1.0, 0, 0, 0)):
                            best_of[i == j] = candidate
        for self_titled in (False, True):
            best = best_of.get(self_titled)
            if best is not None and best[0] >= self.min_score:
                return LinePair(keys[best[2]][0], keys[best[3]][0], round(best[0], 4))
        return None

    # -- internals ----------------------------------------------------------------------

    def _rank_pair(
        self, query: _Query, factor: float = 1.0, floor: float = -1.0
    ) -> list[Candidate]:
        """The albums of close artists and of close titles, best first; with a `floor`, only
        those scoring at least that."""
        a_key, t_key = ocr_fold(query.artist), ocr_fold(query.title)
        exact = self._pairs.get((a_key, t_key))
        if exact is not None:  # the common case, both read right: no scan needed
            return [Candidate(self._ids[p], factor, 1.0, 1.0) for p in exact]
        a_variants = [(v, ocr_fold(v)) for v in _article_variants(query.artist)]
        t_variants = [(v, ocr_fold(v)) for v in _article_variants(query.title)]
        self_titled = a_key == t_key
        artist_hits: set[int] = set()
        best_artist = 0.0
        for _, variant in a_variants:
            for _, sim, ai in self._artist_search.extract(
                variant, limit=_ARTIST_LIMIT, score_cutoff=_CUTOFF
            ):
                artist_hits.add(ai)
                best_artist = max(best_artist, sim)
        if " " in a_key and best_artist < 90:
            for _, _, ai in self._sorted_search.extract(
                sort_tokens(a_key), limit=4, score_cutoff=70
            ):
                artist_hits.add(ai)
        # Kept at or below the early exit's threshold, so that it fires as if nothing were
        # pruned, whatever the minimum score is set to.
        floor = min(floor, _EARLY_EXIT * factor)
        scorer = _PairScorer(self, a_variants, t_variants, self_titled, factor, floor)
        out = scorer.by_artist(artist_hits)
        if out and out[0].score >= _EARLY_EXIT * factor:
            # Both fields are close on an album of a close artist; an album found through its
            # title alone would need an even closer artist, so it is among these already.
            return out
        titles = [
            ti
            for _, _, ti in self._title_search.extract(
                t_key, limit=_TITLE_LIMIT, score_cutoff=_CUTOFF
            )
            if len(self._title_albums[ti]) <= _COMMON_TITLE
        ]
        out += scorer.by_title(titles, artist_hits)
        out.sort(key=_order)
        return out

    def _rank_title_only(self, t_key: str, floor: float = -1.0) -> list[Candidate]:
        """The albums of the closest titles, best first; with a `floor`, only those scoring at
        least that (a title hundreds of albums share, "Live", then costs no `Candidate` each:
        it is never distinctive, so it cannot reach the minimum)."""
        hits = self._title_search.extract(t_key, limit=3, score_cutoff=_CUTOFF)
        if not hits:
            return []
        out = []
        sims = [similarity(t_key, self._title_keys[ti]) for _, _, ti in hits]
        for rank, (_, _, ti) in enumerate(hits):
            sim, albums, key = sims[rank], self._title_albums[ti], self._title_keys[ti]
            # One album, and either read exactly (a shorter title will do: no other title is
            # that close) or long with no close rival title.
            distinctive = (
                rank == 0
                and len(albums) == 1
                and " " in key
                and (
                    (sim == 1.0 and len(key) >= EXACT_TITLE_MIN_CHARS and not self._baseline)
                    or (
                        len(key) >= TITLE_ONLY_MIN_CHARS
                        and all(other < sim - 0.08 for other in sims[1:])  # no close rival
                    )
                )
            )
            factor = TITLE_ONLY_FACTOR if distinctive else TITLE_ONLY_FACTOR * 0.8
            if sim * factor < floor:
                continue
            out.extend(Candidate(self._ids[p], sim * factor, 0.0, sim) for p in albums)
        out.sort(key=_order)
        return out

    def _rank_artist_only(self, a_key: str) -> list[Candidate]:
        out = []
        for _, sim, ai in self._artist_search.extract(a_key, limit=3, score_cutoff=_CUTOFF):
            out.extend(
                Candidate(self._ids[p], 0.0, sim / 100, 0.0) for p in self._artist_albums[ai]
            )
        out.sort(key=lambda c: (-c.artist_score, c.album_id))
        return out


def _article_variants(key: str) -> tuple[str, ...]:
    """A misspelt leading "The" ("Teh", "Thd") survives normalisation; try without it too."""
    first, _, rest = key.partition(" ")
    if rest and 2 <= len(first) <= 4 and first[0] == "t" and OSA.distance(first, "the") <= 1:
        return (key, rest)
    return (key,)


def _order(c: Candidate) -> tuple[float, int]:
    return (-c.score, c.album_id)


def _dedupe(ranked: list[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in ranked:
        if c.album_id not in seen:
            seen.add(c.album_id)
            out.append(c)
    return out


_CACHE: dict[tuple[str, float], tuple[tuple[int, int], CatalogMatcher]] = {}


def load_matcher(path: Path | str, min_score: float = DEFAULT_MIN_SCORE) -> CatalogMatcher | None:
    """The matcher for the snapshot at `path`, rebuilt only when the file changed (the server
    replaces it after every import); None when there is no snapshot yet."""
    path = Path(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    stamp = (stat.st_mtime_ns, stat.st_size)
    key = (str(path.resolve()), min_score)
    cached = _CACHE.get(key)
    if cached is None or cached[0] != stamp:
        cached = _CACHE[key] = (stamp, CatalogMatcher.from_parquet(path, min_score))
    return cached[1]
