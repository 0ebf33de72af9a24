"""`scanbatch usage`: the data folder's disk use per part and the store's counts. Through the
running server's `GET /admin/usage` while it holds the store, else on the store directly."""

from __future__ import annotations

import click

from scanbatch.cli import settings
from scanbatch.cli.through_server import local_or_server
from scanbatch.usage import UsageParts, UsageReport, human_bytes


@click.command("usage")
def command() -> None:
    """Show the disk use of the data folder per part, the free space, and job and record
    counts (through the server while it runs)."""
    from scanbatch.usage import usage

    report = local_or_server(
        lambda store: usage(store, settings()),
        lambda server: UsageReport.model_validate(server.call("GET", "/admin/usage")),
    )
    click.echo(table(report))


def table(r: UsageReport) -> str:
    lines = [f"Data folder {r.data_dir}", f"{'PART':<12} {'SIZE':>10} {'FILES':>9}"]
    for name in UsageParts.model_fields:
        part = getattr(r.parts, name)
        lines.append(f"{name.replace('_', ' '):<12} {human_bytes(part.bytes):>10} {part.files:>9}")
    lines.append(f"{'total':<12} {human_bytes(r.total_bytes):>10}")
    lines.append(
        f"Disk: {human_bytes(r.disk_free_bytes)} free of {human_bytes(r.disk_total_bytes)}"
    )
    j = r.jobs
    lines.append(
        f"Jobs: {j.completed} completed, {j.failed} failed, {j.processing} processing, "
        f"{j.pending} pending"
    )
    lines.append(
        f"Records: {r.records} ({r.reviewed_records} reviewed, {r.pruned_records} with their "
        "photos removed)"
    )
    keep = (
        f"photos of unreviewed records kept {r.keep_photos_days} days"
        if r.keep_photos_days
        else "photos kept forever (SCANBATCH_KEEP_PHOTOS_DAYS unset)"
    )
    lines.append(f"Retention: {keep}")
    return "\n".join(lines)
