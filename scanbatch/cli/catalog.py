"""`scanbatch catalog`: import the library catalog from CSV, generate a synthetic one, show
counts, refresh the Parquet snapshot the processing kernel matches against."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scanbatch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("catalog", help="Import, generate and inspect the catalog.")
    sub = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser("import", help="Upsert albums from a CSV file (see docs/catalog.md).")
    p.add_argument("file", type=Path, help="CSV file with a header line.")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("generate", help="Write a deterministic synthetic catalog as CSV.")
    p.add_argument("--albums", type=int, required=True, help="Number of albums.")
    p.add_argument("--seed", type=int, default=0, help="Random seed (same seed, same file).")
    p.add_argument("--out", type=Path, help="Output file (default: standard output).")
    p.add_argument(
        "--import", dest="do_import", action="store_true", help="Also import it into the store."
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("stats", help="Counts of artists and albums, and the snapshot's state.")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("snapshot", help="Rewrite the Parquet snapshot from the store.")
    p.set_defaults(func=cmd_snapshot)


def _open_store(settings: Settings):
    from scanbatch.store import JobStore

    store = JobStore.open(settings.store_path)
    # The store's transactions live on its Database (`write()`/`read()` context managers).
    return store, getattr(store, "db", store)


def _import_file(path: Path, settings: Settings) -> int:
    from scanbatch.catalog import export_snapshot, import_csv

    store, db = _open_store(settings)
    try:
        with db.write() as cur:
            summary = import_csv(cur, path, own_transaction=False)
        with db.read() as cur:
            export_snapshot(cur, settings.catalog_snapshot)
    finally:
        store.close()
    for line, message in summary.errors:
        print(f"{path}:{line}: rejected: {message}", file=sys.stderr)
    print(f"{path}: {summary}; snapshot {settings.catalog_snapshot}")
    return 1 if summary.rejected else 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    return _import_file(args.file, settings)


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from scanbatch.catalog import generate_catalog, write_csv
    from scanbatch.errors import BadRequest

    if args.albums < 0:
        raise BadRequest("--albums must be >= 0")
    if args.do_import and args.out is None:
        raise BadRequest("--import needs --out FILE.csv (the file that gets imported)")
    rows = generate_catalog(args.albums, args.seed)
    if args.out is None:
        write_csv(rows, sys.stdout)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="") as out:
        write_csv(rows, out)
    print(f"wrote {len(rows)} albums to {args.out}", file=sys.stderr)
    return _import_file(args.out, settings) if args.do_import else 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    store, db = _open_store(settings)
    try:
        with db.read() as cur:
            artists, albums = cur.execute(
                "SELECT (SELECT count(*) FROM catalog_artists), "
                "(SELECT count(*) FROM catalog_albums)"
            ).fetchone()
            genres = cur.execute(
                "SELECT coalesce(genre, '(none)'), count(*) AS n FROM catalog_albums "
                "GROUP BY 1 ORDER BY n DESC, 1"
            ).fetchall()
    finally:
        store.close()
    print(f"artists: {artists}\nalbums: {albums}")
    for genre, n in genres:
        print(f"  {genre}: {n}")
    snap = settings.catalog_snapshot
    print(f"snapshot: {snap} ({'present' if snap.exists() else 'missing'})")
    return 0


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    from scanbatch.catalog import export_snapshot

    store, db = _open_store(settings)
    try:
        with db.read() as cur:
            export_snapshot(cur, settings.catalog_snapshot)
    finally:
        store.close()
    print(f"wrote {settings.catalog_snapshot}")
    return 0
