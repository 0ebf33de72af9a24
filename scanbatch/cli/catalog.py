"""`scanbatch catalog`: import the library catalog from CSV, generate a synthetic one, show
counts, refresh the Parquet snapshot the processing kernel matches against."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scanbatch.cli import finish, settings
from scanbatch.settings import Settings


@click.group("catalog")
def command() -> None:
    """Import, generate and inspect the catalog."""


def _open_store(settings: Settings):
    from scanbatch.store import JobStore  # on use: `scanbatch catalog generate` needs no store

    return JobStore.open(settings.store_path)


def _import_file(path: Path, settings: Settings) -> int:
    store = _open_store(settings)
    try:
        summary = store.catalog.import_csv(path)
        store.catalog.export_snapshot(settings.catalog_snapshot)
    finally:
        store.close()
    for line, message in summary.errors:
        print(f"{path}:{line}: rejected: {message}", file=sys.stderr)
    print(f"{path}: {summary}; snapshot {settings.catalog_snapshot}")
    return 1 if summary.rejected else 0


@command.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def cmd_import(file: Path) -> None:
    """Upsert albums from a CSV file.

    FILE has a header line; its columns are described in docs/catalog.md.
    """
    finish(_import_file(file, settings()))


@command.command("generate")
@click.option("--albums", type=click.IntRange(min=0), required=True, help="Number of albums.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same file.")
@click.option("--out", type=click.Path(path_type=Path), help="Output file (default: stdout).")
@click.option("--import", "do_import", is_flag=True, help="Also import it into the store.")
def cmd_generate(albums: int, seed: int, out: Path | None, do_import: bool) -> None:
    """Write a deterministic synthetic catalog as CSV."""
    from scanbatch.catalog import generate_catalog, write_csv

    if do_import and out is None:
        raise click.UsageError("--import needs --out FILE.csv (the file that gets imported)")
    rows = generate_catalog(albums, seed)
    if out is None:
        write_csv(rows, sys.stdout)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        write_csv(rows, fh)
    click.echo(f"wrote {len(rows)} albums to {out}", err=True)
    if do_import:
        finish(_import_file(out, settings()))


@command.command("stats")
def cmd_stats() -> None:
    """Counts of artists and albums, and the snapshot's state."""
    settings_ = settings()
    store = _open_store(settings_)
    try:
        artists, albums, genres = store.catalog.stats()
    finally:
        store.close()
    print(f"artists: {artists}\nalbums: {albums}")
    for genre, n in genres:
        print(f"  {genre}: {n}")
    snap = settings_.catalog_snapshot
    print(f"snapshot: {snap} ({'present' if snap.exists() else 'missing'})")


@command.command("snapshot")
def cmd_snapshot() -> None:
    """Rewrite the Parquet snapshot the processing kernel matches against."""
    settings_ = settings()
    store = _open_store(settings_)
    try:
        store.catalog.export_snapshot(settings_.catalog_snapshot)
    finally:
        store.close()
    print(f"wrote {settings_.catalog_snapshot}")
