"""The `ocr` extractor: the offline default. RapidOCR reads the text, zxing-cpp the barcodes,
and the layout heuristics in `ocr_layout` decide which line is which field.

Confidences are built from evidence, not constants: the OCR score of the line(s) a value came
from, raised when another photo read the same value, when the catalog agrees, or when a valid
barcode backs it; lowered when the layout left the choice open or a check digit failed.
Context from the app (artistName, albumTitle, detectedUPC) only breaks ties and adds agreement:
every reported value is text read from the photos."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from pydantic import Field
from rapidfuzz import fuzz

from scanbatch.extractors import ocr_engine, ocr_layout
from scanbatch.extractors.base import Extractor, ExtractorOptions
from scanbatch.extractors.ocr_layout import BACK, FRONT, LABEL, STICKER, Reading
from scanbatch.models import Extraction, ExtractionField, Photo, ScanContext, Usage
from scanbatch.settings import Settings

if TYPE_CHECKING:
    from scanbatch.catalog import Matcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pair:
    artist: str
    title: str
    score: float


def _similar(a: str, b: str) -> float:
    """0..1 similarity that ignores case, punctuation and word order."""
    from scanbatch.catalog.normalize import normalize

    return fuzz.token_sort_ratio(normalize(a), normalize(b)) / 100.0


def _combine(*confidences: float) -> float:
    """Independent pieces of evidence for the same value: 1 - prod(1 - c)."""
    miss = 1.0
    for c in confidences:
        miss *= 1.0 - max(0.0, min(1.0, c))
    return 1.0 - miss


def _key(value: str) -> str:
    return "".join(ch for ch in value.upper() if ch.isalnum())


class OcrExtractor(Extractor):
    name = "ocr"
    reads_catalog = True  # to tell an artist line from a title line, and to check both

    class Options(ExtractorOptions):
        max_side: int = Field(
            1280, ge=320, le=4096, description="Photos are downscaled to this longer side."
        )
        det_side: int = Field(
            ocr_engine.DEFAULT_DET_SIDE,
            ge=320,
            le=2048,
            description="Longer side the text detector works at (768 misses or clips small "
            "type on 1000-1400 px photos; 960 reads it at about the same recognition cost).",
        )
        min_score: float = Field(
            0.6, ge=0, le=1, description="OCR lines scored below this are ignored."
        )
        catalog_min_score: float = Field(
            0.8, ge=0, le=1, description="Catalog pair score needed to decide artist vs title."
        )

    def __init__(
        self, options: ExtractorOptions | None = None, catalog: Matcher | None = None
    ) -> None:
        super().__init__(options)
        self.catalog = catalog

    @classmethod
    def from_options(
        cls, options: ExtractorOptions, settings: Settings, catalog: Matcher | None = None
    ) -> OcrExtractor:
        return cls(options, catalog)

    # -- the interface -----------------------------------------------------------------------

    def extract(self, photos: list[Photo], context: ScanContext | None) -> Extraction:
        opts: OcrExtractor.Options = self.options  # type: ignore[assignment]
        started = time.perf_counter()
        context = context or ScanContext()
        audit: dict[str, Any] = {"photos": []}
        readings: list[Reading] = []
        fronts: list[ocr_layout.FrontReading] = []
        label_lines: list[str] = []
        other_lines: list[str] = []
        front_lines: list[tuple[int, list[ocr_engine.OcrLine], tuple[int, int]]] = []
        # Decode every photo first: a broken one fails the item before any OCR time is spent.
        images = [ocr_engine.decode_photo(photo, i) for i, photo in enumerate(photos)]
        for position, (photo, img) in enumerate(zip(photos, images, strict=True)):
            barcodes = ocr_engine.read_barcodes(ocr_engine.downscale(img, 2048))
            small = ocr_engine.downscale(img, opts.max_side)
            lines = ocr_engine.read_text(small, det_side=opts.det_side)
            kind = ocr_layout.canonical_kind(photo.photo_type)
            kind_from = "type"
            if kind is None:
                kind, kind_from = ocr_layout.classify(lines, barcodes, small.size), "content"
            audit["photos"].append(
                {
                    "position": position,
                    "photoType": photo.photo_type,
                    "kind": kind,
                    "kindFrom": kind_from,
                    "size": list(small.size),
                    "lines": [ln.to_json() for ln in lines],
                    "barcodes": [b.to_json() for b in barcodes],
                }
            )
            if kind == BACK:
                readings += ocr_layout.read_back(position, lines, barcodes, opts.min_score)
            else:
                # Barcodes count wherever they are: a front may show the price sticker's.
                readings += ocr_layout.upc_readings(position, [], barcodes)
            if kind == FRONT:
                front_lines.append((position, lines, small.size))
            else:
                other_lines += [ln.text for ln in lines if ln.score >= opts.min_score]
            if kind == LABEL:
                readings += ocr_layout.read_label(position, lines, opts.min_score)
                label_lines += [ln.text for ln in lines if ln.score >= opts.min_score]
            elif kind == STICKER:
                readings += ocr_layout.read_sticker(position, lines, opts.min_score)

        # Fronts last: what the other photos read tells apart names the cover sets alike.
        label_names = [r.value for r in readings if r.field == "label_name"]
        for position, lines, size in front_lines:
            front = ocr_layout.read_front(
                position, lines, opts.min_score, size, other_lines, label_names
            )
            fronts.append(front)
            readings += ocr_layout.front_label_reading(front, size)
        artist_title, decision = self._artist_title(fronts, label_lines, context)
        readings += artist_title
        audit["decision"] = decision

        fields = self._merge(readings, context)
        audit["catalog"] = self._catalog_agreement(fields)
        audit["fields"] = {k: v.model_dump() for k, v in fields.items()}
        latency = round((time.perf_counter() - started) * 1000, 1)
        usage = Usage(
            extractor=self.name,
            model=ocr_engine.versions(),
            latency_ms=latency,
            raw_response=json.dumps(audit, ensure_ascii=False),
        )
        return Extraction(**fields, usage=usage)

    # -- artist and title --------------------------------------------------------------------

    def _artist_title(
        self,
        fronts: list[ocr_layout.FrontReading],
        label_lines: list[str],
        context: ScanContext,
    ) -> tuple[list[Reading], dict[str, Any]]:
        """Artist and title from the front covers' biggest blocks. Which is which: the catalog
        when it knows the pair, else the app's hints, else the upper block is the artist."""
        out: list[Reading] = []
        decision: dict[str, Any] = {}
        for front in fronts:
            blocks = front.blocks[:4]
            if not blocks:
                continue
            big = blocks[:2]
            # A block of two rows may still be artist over title: the catalog sees both ways.
            units = blocks + [
                ocr_layout.Block([ln]) for b in blocks if len(b.lines) > 1 for ln in b.lines
            ]
            # ... and two blocks one above the other may be one wrapped name the strict
            # wrap rule kept apart.
            by_top = sorted(blocks, key=lambda b: b.top)
            units += [
                ocr_layout.Block(a.lines + b.lines)
                for a, b in pairwise(by_top)
                if abs(a.height - b.height) <= 0.25 * max(a.height, b.height)
            ]
            pair = self._catalog_pair([u.text for u in units] + label_lines)
            if pair is None or _similar(pair.artist, pair.title) >= 0.95:
                # best_pair ranks a self-titled album (one line as both) level with the exact
                # pair of two lines and takes the lower id on a tie; two distinct blocks of
                # display type are better evidence for a distinct artist and title.
                two = big if len(big) == 2 else []
                if len(big[0].lines) > 1:
                    two = units[len(blocks) : len(blocks) + 2]  # the rows of the first block
                if len(two) == 2:
                    pair = self._distinct_pair(two[0].text, two[1].text) or pair
            artist_b = title_b = None
            how = "position"
            certainty = 0.75
            if pair is not None and pair.score >= self.options.catalog_min_score:  # type: ignore[attr-defined]
                artist_b = max(units, key=lambda b: _similar(b.text, pair.artist))
                title_b = max(units, key=lambda b: _similar(b.text, pair.title))
                a_sim, t_sim = (
                    _similar(artist_b.text, pair.artist),
                    _similar(title_b.text, pair.title),
                )
                self_titled = _similar(pair.artist, pair.title) >= 0.95
                if (artist_b is not title_b or self_titled) and min(a_sim, t_sim) >= 0.8:
                    how, certainty = "catalog", 0.9 + 0.1 * min(a_sim, t_sim)
                else:
                    artist_b = title_b = None
            if artist_b is None and len(big) == 2 and (context.artist_name or context.album_title):
                a, b = big
                straight = _similar(a.text, context.artist_name or "") + _similar(
                    b.text, context.album_title or ""
                )
                crossed = _similar(b.text, context.artist_name or "") + _similar(
                    a.text, context.album_title or ""
                )
                if abs(straight - crossed) >= 0.3:
                    artist_b, title_b = (a, b) if straight > crossed else (b, a)
                    how, certainty = "context", 0.85
            if artist_b is None:
                if len(big) == 2:
                    artist_b, title_b = sorted(big, key=lambda b: b.top)
                else:
                    # One block of display type: a self-titled record shows just the name, or
                    # the detector missed the other. Weak for the title, so that the label's
                    # or the back's reading of it wins when there is one.
                    artist_b = title_b = big[0]
                    certainty = 0.5
            decision[f"photo{front.photo}"] = {
                "artistTitleBy": how,
                "catalogPair": None if pair is None else [pair.artist, pair.title, pair.score],
            }
            catalog_boost = pair.score * 0.8 if how == "catalog" and pair is not None else 0.0
            for fld, block in (("artist_name", artist_b), ("album_title", title_b)):
                conf = _combine(block.score * certainty, catalog_boost * block.score)
                if artist_b is title_b and how != "catalog" and fld == "album_title":
                    conf *= 0.5
                out.append(Reading(fld, block.text, conf, front.photo, note=how))
        return out, decision

    def _catalog_agreement(self, fields: dict[str, ExtractionField]) -> dict[str, Any] | None:
        """When the catalog holds the record read, raise the confidence of the fields it agrees
        with, and take its spelling where the difference is one a photo cannot show (case,
        punctuation, OCR-confusable glyphs such as l/I/1 or O/0: `normalize.skeleton`)."""
        artist, title = fields.get("artist_name"), fields.get("album_title")
        if self.catalog is None or artist is None or title is None:
            return None
        from scanbatch.catalog.normalize import skeleton

        try:
            found = self.catalog.best(artist.value, title.value)
            row = self.catalog.get(found.album_id) if found is not None else None
        except Exception:  # an aid only (see _catalog_pair)
            log.exception("catalog lookup failed; fields left as read")
            return None
        if row is None:
            return {"match": None}
        score = float(found.score)
        snapped = []
        for name, column in (
            ("artist_name", "artist_name"),
            ("album_title", "album_title"),
            ("label_name", "label"),
        ):
            f, known = fields.get(name), row.get(column)
            if f is None or not known:
                continue
            same = skeleton(f.value) == skeleton(known)
            if not same and _similar(f.value, known) < 0.9:
                continue
            conf = _combine(f.confidence, 0.6 * score)
            value = known if same else f.value
            if value != f.value:
                snapped.append(name)
            fields[name] = ExtractionField(value=value, confidence=round(conf, 3))
        return {"match": found.album_id, "score": score, "snapped": snapped}

    def _distinct_pair(self, a: str, b: str) -> _Pair | None:
        """Both orders of two lines looked up in the catalog; the order that scores higher
        (the matcher discounts a swapped reading) tells which line is the artist."""
        if self.catalog is None:
            return None
        found: list[_Pair] = []
        for artist, title in ((a, b), (b, a)):
            try:
                c = self.catalog.best(artist, title)
            except Exception:  # an aid only (see _catalog_pair)
                log.exception("catalog lookup failed")
                return None
            if c is not None:
                found.append(_Pair(artist, title, float(c.score)))
        return max(found, key=lambda p: p.score) if found else None

    def _catalog_pair(self, lines: list[str]) -> _Pair | None:
        if self.catalog is None or len(lines) < 1:
            return None
        try:
            found = self.catalog.best_pair(lines)
        except Exception:  # the catalog is an aid: a failure in it must not fail the item
            log.exception("catalog best_pair failed; deciding artist/title by layout")
            return None
        if found is None:
            return None
        return _Pair(found.artist, found.title, float(found.score))

    # -- merging readings --------------------------------------------------------------------

    def _merge(self, readings: list[Reading], context: ScanContext) -> dict[str, ExtractionField]:
        """One value per field: readings of the same value (by its letters and digits) add up,
        a different value read elsewhere takes away."""
        hints = {
            "artist_name": context.artist_name,
            "album_title": context.album_title,
            "upc": context.detected_upc,
            "review_text": context.sticker_text,
        }
        fields: dict[str, ExtractionField] = {}
        by_field: dict[str, list[Reading]] = {}
        for r in readings:
            by_field.setdefault(r.field, []).append(r)
        for name, rs in by_field.items():
            groups: dict[str, list[Reading]] = {}
            for r in rs:
                groups.setdefault(_key(r.value), []).append(r)
            support = {
                k: _combine(*(r.confidence for r in g))
                for k, g in groups.items()
                if any(r.photo >= 0 for r in g)
            }
            if not support:
                continue
            best = max(support, key=support.__getitem__)
            # The value as read on the photo with the best line, not as a hint spelled it.
            chosen = max((r for r in groups[best] if r.photo >= 0), key=lambda r: r.confidence)
            conf = support[best]
            rivals = [v for k, v in support.items() if k != best]
            if rivals:
                conf *= 1.0 - 0.5 * max(rivals)
            hint = hints.get(name)
            if hint and name != "review_text":
                if name == "upc":
                    agrees = _key(hint).lstrip("0") == best.lstrip("0")
                else:
                    agrees = _similar(hint, chosen.value) >= 0.9
                # The app read it too (its own OCR or a person): agreement is a second witness,
                # disagreement a reason for doubt.
                conf = _combine(conf, 0.5) if agrees else conf * 0.85
            fields[name] = ExtractionField(value=chosen.value, confidence=round(conf, 3))
        return fields
