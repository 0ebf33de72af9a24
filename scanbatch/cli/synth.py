"""`scanbatch synth --items N --seed S [--catalog CSV] [--difficulty easy|default|hard] OUT/`:
a synthetic set of record photos with `manifest.json` and `truth.json`."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--items", type=click.IntRange(min=1), default=8, show_default=True, help="Records.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalog CSV to draw records from (default: data/catalog_sample.csv when present, "
    "else a small built-in list).",
)
@click.option(
    "--difficulty",
    type=click.Choice(("easy", "default", "hard")),
    default="default",
    show_default=True,
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Processes to use (default: CPU count)."
)
def command(
    out: Path, items: int, seed: int, catalog: Path | None, difficulty: str, workers: int | None
) -> None:
    """Generate synthetic record photos with ground truth into OUT.

    Renders records from the catalog (and ~12% not in it) as front covers, center labels,
    back covers with real barcodes and review stickers, "photographs" them, and writes the
    photos, manifest.json and truth.json. The same seed gives the same bytes.
    """
    from scanbatch.synth import generate_set

    started = time.perf_counter()
    result = generate_set(out, items, seed, catalog, difficulty, workers=workers)
    click.echo(
        f"wrote {result.items} items, {result.photos} photos to {result.out_dir} "
        f"(records from {result.catalog}) in {time.perf_counter() - started:.1f}s"
    )
    click.echo(f"  manifest: {result.out_dir / 'manifest.json'}")
    click.echo(f"  truth:    {result.out_dir / 'truth.json'}")
