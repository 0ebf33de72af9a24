"""`scanbatch export FOLDER`: download the golden set (every reviewed item, as a dataset
folder) from the running server, through the HTTP client."""

from __future__ import annotations

import json
from pathlib import Path

import click

from scanbatch.cli import server_client
from scanbatch.client import URL_ENV


@click.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--url", help=f"Server URL (default: ${URL_ENV}, else the configured host and port).")
@click.option("--since", help="Only reviews saved after this ISO 8601 time.")
def command(folder: Path, url: str | None, since: str | None) -> None:
    """Download the golden set (reviewed items) from the running server.

    Writes the photos, manifest.json, truth.json and results.jsonl into FOLDER; score it with
    `scanbatch eval FOLDER/truth.json FOLDER/results.jsonl`. The token is read from
    $SCANBATCH_TOKEN (a musicDirector or stationManager key).
    """
    out = server_client(url).export_dataset(folder, since=since)
    items = json.loads((out / "truth.json").read_text())["items"]
    click.echo(f"wrote {len(items)} reviewed item(s) to {out}")
