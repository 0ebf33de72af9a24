"""OCR extractor benchmark: prints figures and the goals they meet, asserts nothing.

    .venv/bin/python benchmarks/bench_ocr.py [--items 200] [--seed 1] [--difficulty default]

Generates a seeded synthetic set with `scanbatch.synth` (cached under --cache-dir, so a re-run
only re-extracts), imports the catalog it was drawn from (data/catalog_sample.csv) the way the
server does (CSV -> DuckDB -> Parquet snapshot -> `CatalogMatcher`), runs the `ocr` extractor
through `scanbatch.pipeline.process_folder` with that matcher, and scores the results with
`scanbatch.evaluate`. Timing is wall time per photo for the whole run (items run concurrently,
OCR calls are serialised) plus process CPU time per photo; both depend on what else runs on
the machine, so the load average is printed with them."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import duckdb

from scanbatch.catalog import CATALOG_MIGRATION_SQL, CatalogMatcher, export_snapshot, import_csv
from scanbatch.evaluate import evaluate
from scanbatch.extractors import ocr_engine
from scanbatch.extractors.ocr import OcrExtractor
from scanbatch.jobfolder import JobFolder
from scanbatch.models import DatasetManifest, Manifest
from scanbatch.pipeline import process_folder
from scanbatch.settings import SHIPPED_DATA
from scanbatch.synth import generate_set
from scanbatch.validation import batch_slices

GOALS = {  # field -> minimum exact accuracy
    "artistName": 0.9,
    "albumTitle": 0.9,
    "labelName": 0.9,
    "catalogNumber": 0.9,
    "upc": 0.98,
}
MATCH_IN_CATALOG = 0.95
NO_WRONG_MATCH = 0.98


def _set(args: argparse.Namespace) -> Path:
    out = Path(args.cache_dir) / f"synth-{args.items}-s{args.seed}-{args.difficulty}"
    if args.regenerate and out.exists():
        shutil.rmtree(out)
    if not (out / "truth.json").exists():
        started = time.perf_counter()
        generate_set(out, args.items, args.seed, difficulty=args.difficulty)
        print(f"generated {out} in {time.perf_counter() - started:.0f} s")
    else:
        print(f"using cached set {out} (--regenerate to rebuild)")
    return out


def _catalog_csv(truth: dict) -> Path:
    source = truth.get("catalog", "")
    path = SHIPPED_DATA.parent / source if source.endswith(".csv") else Path(source)
    if not path.is_file():
        sys.exit(f"the set was drawn from {source!r}, which is not a CSV file here")
    return path


def _matcher(csv_path: Path, tmp: Path) -> CatalogMatcher:
    con = duckdb.connect(str(tmp / "store.duckdb"))
    con.execute(CATALOG_MIGRATION_SQL)
    summary = import_csv(con, csv_path)
    snapshot = tmp / "catalog.parquet"
    export_snapshot(con, snapshot)
    con.close()
    matcher = CatalogMatcher.from_parquet(snapshot)
    print(f"catalog {csv_path.name}: {summary}; {len(matcher)} albums in the snapshot")
    return matcher


def _job_folders(set_dir: Path, truth_items: list[dict], tmp: Path) -> list[tuple[int, JobFolder]]:
    """The set as the station's batches (a dataset is not a batch: at most 10 records each),
    one job folder per batch, with the index of its first record in the set."""
    dataset = DatasetManifest.model_validate_json((set_dir / "manifest.json").read_text())
    photos = {item["itemIndex"]: item["photos"] for item in truth_items}
    folders = []
    for part in batch_slices([item.image_count for item in dataset.items]):
        folder = JobFolder(tmp / f"job{part.start:04d}")
        folder.create(Manifest(items=dataset.items[part.start : part.stop]))
        for index in part:
            for position, name in enumerate(photos[index]):
                folder.write_image(index - part.start, position, (set_dir / name).read_bytes())
        folders.append((part.start, folder))
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--difficulty", default="default")
    parser.add_argument("--concurrency", type=int, default=4, help="items extracted at once")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "scanbatch-bench"))
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--details", action="store_true", help="print every wrong field")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")

    set_dir = _set(args)
    truth = json.loads((set_dir / "truth.json").read_text())
    items = truth["items"]
    photos = sum(len(i["photos"]) for i in items)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        matcher = _matcher(_catalog_csv(truth), tmp)
        folders = _job_folders(set_dir, items, tmp)
        extractor = OcrExtractor(catalog=matcher)
        ocr_engine.warm_up(extractor.options.det_side)  # type: ignore[attr-defined]
        load_before = os.getloadavg()[0]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes = [
            outcome.model_copy(update={"item_index": first + outcome.item_index})
            for first, folder in folders
            for outcome in process_folder(
                folder, extractor, matcher=matcher, concurrency=args.concurrency
            )
        ]
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        load_after = os.getloadavg()[0]
    report = evaluate(items, outcomes)
    latencies = sorted(o.usage.latency_ms or 0.0 for o in outcomes if o.usage)
    per_photo = [
        (o.usage.latency_ms or 0.0) / len(items[o.item_index]["photos"])
        for o in outcomes
        if o.usage
    ]

    print()
    print(report.format_table())
    print()
    print(
        f"{len(items)} items, {photos} photos ({args.difficulty}, seed {args.seed}), "
        f"concurrency {args.concurrency}"
    )
    print(f"wall {wall:.1f} s = {wall / photos:.3f} s/photo; CPU {cpu / photos:.3f} s/photo")
    print(
        f"item latency median {latencies[len(latencies) // 2] / 1000:.2f} s, "
        f"per photo median {sorted(per_photo)[len(per_photo) // 2] / 1000:.2f} s "
        f"(queued behind the OCR lock included); load {load_before:.1f} -> {load_after:.1f}"
    )
    print()
    print("goals:")
    for name, goal in GOALS.items():
        acc = report.fields[name].accuracy or 0.0
        print(f"  {name:<15} {acc:.3f} >= {goal:.2f}  {'ok' if acc >= goal else 'MISSED'}")
    m = report.match
    hit = m.in_catalog_correct / m.in_catalog if m.in_catalog else 1.0
    clean = m.not_in_catalog_correct / m.not_in_catalog if m.not_in_catalog else 1.0
    print(f"  {'match (in)':<15} {hit:.3f} >= {MATCH_IN_CATALOG:.2f}  "
          f"{'ok' if hit >= MATCH_IN_CATALOG else 'MISSED'}")  # fmt: skip
    print(f"  {'no wrong (out)':<15} {clean:.3f} >= {NO_WRONG_MATCH:.2f}  "
          f"{'ok' if clean >= NO_WRONG_MATCH else 'MISSED'}")  # fmt: skip
    if args.details:
        print()
        for d in report.details:
            for name in GOALS:
                f = d[name]
                if f["true"] is not None and not f["exact"]:
                    print(f"  item {d['itemIndex']:3d} {name:<14} want {f['true']!r} "
                          f"got {f['predicted']!r} ({f['confidence']})")  # fmt: skip
            if not d["match"]["correct"]:
                print(f"  item {d['itemIndex']:3d} match: want {d['match']['true']} "
                      f"got {d['match']['predicted']}")  # fmt: skip


if __name__ == "__main__":
    main()
