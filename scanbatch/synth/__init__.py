"""A synthetic set of record photos with ground truth: `generate_set(out_dir, n_items, seed)`
writes the photos, a `manifest.json` the API accepts and a `truth.json`.

The same seed gives the same bytes: every item draws from its own generator seeded by
(seed, item index), so items are independent of each other and of how they are scheduled."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanbatch.errors import BadRequest
from scanbatch.names import FIELDS
from scanbatch.settings import SHIPPED_DATA
from scanbatch.synth.distort import DIFFICULTIES, encode, photograph
from scanbatch.synth.records import BUILTIN, CatalogRow, Record, draw_records, load_catalog
from scanbatch.synth.render import RENDERERS

DEFAULT_CATALOG = SHIPPED_DATA / "catalog_sample.csv"
# The station's app names its photos differently; some items use its names.
APP_NAMES = {"front_cover": "front", "back_cover": "back", "center_label": "photo",
             "sticker": "photo"}  # fmt: skip
_COUNT_WEIGHTS = (0.1, 0.25, 0.35, 0.2, 0.1)  # 1..5 photos per item


@dataclass(frozen=True)
class SynthSet:
    out_dir: Path
    items: int
    photos: int
    catalog: str


def _plan(rng: np.random.Generator) -> list[str]:
    """The photo kinds of one item, front cover first."""
    count = int(rng.choice(5, p=_COUNT_WEIGHTS)) + 1
    extras = ["center_label", "back_cover", "sticker", "center_label"]
    picked = [extras[int(i)] for i in sorted(rng.choice(4, size=count - 1, replace=False))]
    if rng.random() < 0.3:
        picked = [picked[int(i)] for i in rng.permutation(len(picked))]
    return ["front_cover", *picked]


def _value(rec: Record, name: str) -> str:
    return {
        "artistName": rec.artist,
        "albumTitle": rec.title,
        "labelName": rec.label,
        "catalogNumber": rec.catalog_number,
        "reviewText": rec.review_text,
        "upc": rec.upc,
    }[name]


def _make_item(
    out_dir: str, index: int, rec: Record, seed: int, difficulty: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Renders, photographs and writes one item; returns its manifest entry and its truth."""
    import cv2

    cv2.setNumThreads(1)  # items run in parallel processes; threads inside would oversubscribe
    diff = DIFFICULTIES[difficulty]
    rng = np.random.default_rng([seed, index])
    kinds = _plan(rng)
    # Every 8 items, one uses the app's photo names and one starts with a HEIC photo, so that
    # even a small set exercises both paths.
    app_names = rng.random() < 0.2 or index % 8 == 5
    shown: set[str] = set()
    files, types = [], []
    for pos, kind in enumerate(kinds):
        art, fields = RENDERERS[kind](rec, rng)
        shown |= fields
        photo = photograph(art, rng, diff, spin=kind == "center_label")
        heic = rng.random() < diff.heic_share or (
            diff.heic_share > 0 and index % 8 == 2 and pos == 0
        )
        quality = int(rng.integers(diff.jpeg_quality[0], diff.jpeg_quality[1] + 1))
        photo_type = APP_NAMES[kind] if app_names else kind
        name = f"item{index:02d}_{pos}_{photo_type}.{'heic' if heic else 'jpg'}"
        data = encode(photo, "heic" if heic else "jpeg", quality)
        Path(out_dir, name).write_bytes(data)
        files.append(name)
        types.append(photo_type)
    entry: dict[str, Any] = {"imageCount": len(kinds), "photoTypes": types}
    if "back_cover" not in kinds and rng.random() < 0.25:
        # The app reads barcodes live and sends what it saw.
        entry["context"] = {"detectedUPC": rec.upc}
    truth: dict[str, Any] = {"itemIndex": index}
    for f in FIELDS:
        truth[f] = _value(rec, f) if f in shown else None
    truth.update(
        albumId=rec.album_id,
        libraryCode=rec.library_code,  # on the sticker; must never be read as catalogNumber
        photos=files,
        photoTypes=types,
        kinds=kinds,
    )
    return entry, truth


def generate_set(
    out_dir: Path | str,
    n_items: int,
    seed: int,
    catalog_csv: Path | str | None = None,
    difficulty: str = "default",
    *,
    records: list[CatalogRow] | None = None,
    workers: int | None = None,
) -> SynthSet:
    """Writes `n_items` items to `out_dir`. Records come from `records` when given, else from
    `catalog_csv`, else from the shipped `data/catalog_sample.csv` when present, else from a
    small built-in list. About 12% of the items are records the catalog does not hold."""
    if n_items < 1:
        raise BadRequest(f"--items must be at least 1, got {n_items}")
    if difficulty not in DIFFICULTIES:
        raise BadRequest(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    if records is not None:
        rows, source = list(records), "records"
    elif catalog_csv is not None:
        rows, source = load_catalog(Path(catalog_csv)), str(catalog_csv)
    elif DEFAULT_CATALOG.is_file():
        rows, source = load_catalog(DEFAULT_CATALOG), "data/catalog_sample.csv"
    else:
        rows, source = list(BUILTIN), "builtin"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recs = draw_records(rows, n_items, np.random.default_rng([seed, 1_000_003]))
    jobs = [(str(out), i, rec, seed, difficulty) for i, rec in enumerate(recs)]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if workers > 1 and n_items >= 8:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(_make_item, *zip(*jobs, strict=True), chunksize=4))
    else:
        done = [_make_item(*job) for job in jobs]
    manifest = {"items": [entry for entry, _ in done]}
    truth = {
        "seed": seed,
        "difficulty": difficulty,
        "catalog": source,
        "items": [t for _, t in done],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")
    return SynthSet(out, n_items, sum(e["imageCount"] for e in manifest["items"]), source)
