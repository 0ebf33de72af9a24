"""`scanbatch run`: process one batch locally and print its status JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from scanbatch.extractors import extractor_names
from scanbatch.models import ItemOutcome
from scanbatch.runner import run_batch
from scanbatch.settings import Settings
from scanbatch.store import JobStore


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="Process a batch locally (no server) and print its status JSON",
        description="Validate the manifest, extract every item with the chosen extractor, match "
        "it against the catalog, and print the job in the API's shape on stdout. Progress goes "
        "to stderr. Images are given in manifest order.",
    )
    run.add_argument(
        "--manifest", required=True, type=Path, help="manifest JSON ({items:[...]} or [...])"
    )
    run.add_argument(
        "--extractor",
        choices=extractor_names(),
        help="backend (default: SCANBATCH_EXTRACTOR, else gemini with GEMINI_API_KEY, else ocr)",
    )
    run.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos, in order")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    for path in [args.manifest, *args.images]:
        if not path.is_file():
            print(f"scanbatch run: error: no such file: {path}", file=sys.stderr)
            return 2
    store = JobStore.open(settings.store_path)
    try:
        with tqdm(total=None, desc="items", unit="item", file=sys.stderr) as bar:

            def progress(outcome: ItemOutcome) -> None:
                bar.update(1)
                bar.set_postfix_str(f"item {outcome.item_index}: {outcome.status.value}")

            view = run_batch(
                store,
                settings,
                args.manifest.read_text(),
                args.images,
                extractor_name=args.extractor,
                on_item=progress,
                on_start=lambda total: setattr(bar, "total", total) or bar.refresh(),
            )
    finally:
        store.close()
    print(json.dumps(view.to_json_dict(), indent=2))
    return 0 if view.status == "completed" else 1
