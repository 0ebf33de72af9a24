"""`scanbatch backup FILE [--photos]` and `scanbatch restore FILE` (scanbatch.backup).

A backup goes through the running server when one holds the store (its `GET /admin/backup`,
as the local owner of the data folder), else it reads the store itself. Either way the archive
is written to `FILE.tmp` and renamed once whole, so a backup cut short never has the final
name (and a nightly cron line never leaves yesterday's file half overwritten)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from scanbatch.backup import Backup, read_manifest, restore
from scanbatch.cli import settings
from scanbatch.cli.through_server import ServerClient, local_or_server
from scanbatch.diskspace import disk_full_guard
from scanbatch.errors import ScanbatchError
from scanbatch.private import FILE_MODE

DOWNLOAD_CHUNK = 1024 * 1024
SNAPSHOT_SECONDS = 600


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _download(server: ServerClient, photos: bool, tmp: Path) -> None:
    import requests

    flag = "true" if photos else "false"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    path = f"/admin/backup?photos={flag}"
    # The server copies the store's tables before its first byte: seconds, not a stalled one.
    with os.fdopen(fd, "wb") as fh, server.stream("GET", path, timeout=(30, SNAPSHOT_SECONDS)) as r:
        try:
            for chunk in r.iter_content(DOWNLOAD_CHUNK):
                fh.write(chunk)
        except requests.RequestException as exc:
            raise ScanbatchError(
                f"The backup from {server.url} broke off ({exc}): nothing was written; try again"
            ) from None
        fh.flush()
        os.fsync(fh.fileno())


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--photos", is_flag=True, help="Include the job folders (photos, results, notebooks)."
)
def backup_command(file: Path, photos: bool) -> None:
    """Back up the store to FILE (a tar), while the server works.

    The archive holds jobs, results, reviews with their history, API keys (hashed) and
    webhooks as they were when it began, and with --photos the job folders. Through the
    running server when one holds the store. Restore it with `scanbatch restore FILE`.
    """
    tmp = file.with_name(file.name + ".tmp")
    if not tmp.parent.is_dir():
        raise ScanbatchError(
            f"{tmp.parent} is not a folder: create it, or write the backup elsewhere"
        )
    try:
        # FILE's disk full: a one-line error naming it (the data folder's names its own).
        with disk_full_guard(tmp.parent):
            local_or_server(
                lambda store: Backup.take(store, settings(), photos=photos).write(tmp),
                lambda server: _download(server, photos, tmp),
            )
            manifest = read_manifest(tmp)  # a whole archive: its manifest is written last
            os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tables = manifest["tables"]
    with_photos = f", photos of {len(manifest.get('jobFiles', {}))} jobs" if photos else ""
    click.echo(
        f"wrote {file}: {tables.get('scan_jobs', 0)} jobs, {tables.get('scan_results', 0)} "
        f"records, {tables.get('scan_reviews', 0)} reviews{with_photos}; "
        f"{_size(file.stat().st_size)}"
    )


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def restore_command(file: Path) -> None:
    """Restore a backup into an empty data folder.

    The data folder (SCANBATCH_DATA_DIR) must hold no store and no job folders, and no server
    may run on it. The store is checked before anything is put in place: a failed restore
    leaves the folder as it was. Then start the server there.
    """
    s = settings()
    done = restore(file, s)
    click.echo(
        f"restored {file} into {s.data_dir}: {done.jobs} jobs, {done.records} records, "
        f"{done.reviews} reviews{', with photos' if done.photos else ''} "
        f"(store schema {done.schema_from}"
        + (f", migrated to {done.schema_to})" if done.schema_to != done.schema_from else ")")
    )
