"""`scanbatch run`: process one batch locally and print its status JSON. The click command only
wraps the options; `_run` does the work (`runner.run_batch`: the processing notebook, as the
server runs it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from scanbatch.cli import finish, settings
from scanbatch.extractors import extractor_names
from scanbatch.models import ItemOutcome
from scanbatch.runner import run_batch
from scanbatch.settings import Settings
from scanbatch.store import JobStore


@click.command("run")
@click.option(
    "--manifest",
    required=True,
    type=click.Path(path_type=Path),
    help="Manifest JSON ({items:[...]} or [...]).",
)
@click.option(
    "--extractor",
    callback=lambda ctx, param, value: _known_extractor(value),
    help="Backend: gemini, ocr or one a plugin registers (default: SCANBATCH_EXTRACTOR, else "
    "gemini with GEMINI_API_KEY, else ocr).",
)
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
def command(manifest: Path, extractor: str | None, images: tuple[Path, ...]) -> None:
    """Process a batch locally (no server) and print its status JSON.

    Validates the manifest, extracts every item with the chosen extractor, matches it against
    the catalog, and prints the job in the API's shape on stdout. Progress goes to stderr.
    IMAGES are given in manifest order.
    """
    finish(_run(manifest, extractor, list(images), settings()))


def _known_extractor(name: str | None) -> str | None:
    if name is None:
        return None
    if name not in extractor_names():
        raise click.BadParameter(f"'{name}' is not one of {', '.join(extractor_names())}")
    return name


def _run(manifest: Path, extractor: str | None, images: list[Path], settings: Settings) -> int:
    for path in [manifest, *images]:
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
                manifest.read_text(),
                images,
                extractor_name=extractor,
                on_item=progress,
                on_start=lambda total: setattr(bar, "total", total) or bar.refresh(),
            )
    finally:
        store.close()
    print(json.dumps(view.to_json_dict(), indent=2))
    return 0 if view.status == "completed" else 1
