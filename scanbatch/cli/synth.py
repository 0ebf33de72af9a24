"""`scanbatch synth --items N --seed S [--catalog CSV] [--difficulty easy|default|hard] OUT/`:
a synthetic set of record photos with `manifest.json` and `truth.json`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scanbatch.settings import Settings


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic record photos with ground truth",
        description="Render records from the catalog (and ~12%% not in it) as front covers, "
        "center labels, back covers with real barcodes and review stickers, 'photograph' "
        "them, and write the photos, manifest.json and truth.json to OUT. The same seed gives "
        "the same bytes.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--items", type=_positive, default=8, help="number of records (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalog CSV to draw records from (default: data/catalog_sample.csv when "
        "present, else a small built-in list)",
    )
    p.add_argument("--difficulty", choices=("easy", "default", "hard"), default="default")
    p.add_argument(
        "--workers", type=_positive, default=None, help="processes to use (default: CPU count)"
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from scanbatch.synth import generate_set

    started = time.perf_counter()
    result = generate_set(
        args.out, args.items, args.seed, args.catalog, args.difficulty, workers=args.workers
    )
    print(
        f"wrote {result.items} items, {result.photos} photos to {result.out_dir} "
        f"(records from {result.catalog}) in {time.perf_counter() - started:.1f}s"
    )
    print(f"  manifest: {result.out_dir / 'manifest.json'}")
    print(f"  truth:    {result.out_dir / 'truth.json'}")
    return 0
