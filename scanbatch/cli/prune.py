"""`scanbatch prune --older-than DAYS [--dry-run]`: photo retention once, by hand (the server
does it by itself with SCANBATCH_KEEP_PHOTOS_DAYS). Through the running server's
`POST /admin/prune` while it holds the store, else on the store directly."""

from __future__ import annotations

import click

from scanbatch.cli import settings
from scanbatch.cli.through_server import local_or_server
from scanbatch.models import PruneSummary
from scanbatch.settings import MAX_KEEP_DAYS
from scanbatch.usage import human_bytes

# A first prune of a whole library removes hundreds of thousands of files.
PRUNE_TIMEOUT = 3600.0


@click.command("prune")
@click.option(
    "--older-than",
    "days",
    required=True,
    type=click.IntRange(1, MAX_KEEP_DAYS),
    metavar="DAYS",
    help="Remove the photos of records whose job finished more than DAYS days ago.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would go; remove nothing.")
def command(days: int, dry_run: bool) -> None:
    """Remove the photos (and thumbnails) of finished records nobody reviewed.

    Reviewed records keep their photos; every reading, results.jsonl and notebook stays. A
    removed photo answers 410 saying when and why. Works while the server runs (through it).
    """
    from scanbatch.retention import prune

    summary = local_or_server(
        lambda store: prune(store, settings(), days, dry_run=dry_run),
        lambda server: PruneSummary.model_validate(
            server.call(
                "POST",
                "/admin/prune",
                json={"olderThanDays": days, "dryRun": dry_run},
                timeout=PRUNE_TIMEOUT,
            )
        ),
    )
    click.echo(describe(summary))


def describe(s: PruneSummary) -> str:
    verb = "Would remove" if s.dry_run else "Removed"
    return (
        f"{verb} the photos of {s.records} record(s) of {s.jobs} job(s) finished before "
        f"{s.cutoff:%Y-%m-%d %H:%M} UTC and never reviewed: {s.photos} photo(s) and "
        f"{s.thumbnails} thumbnail(s), {human_bytes(s.bytes)}."
    )
