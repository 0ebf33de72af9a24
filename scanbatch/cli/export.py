"""`scanbatch export FOLDER`: download the golden set (every reviewed item, as a dataset
folder) from the running server, through the HTTP client."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from scanbatch.client import TOKEN_ENV, URL_ENV, Client
from scanbatch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="download the golden set (reviewed items) from the running server",
        description="Writes photos, manifest.json, truth.json and results.jsonl into FOLDER; "
        "score it with `scanbatch eval FOLDER/truth.json FOLDER/results.jsonl`. The server is "
        f"${URL_ENV} (default http://<SCANBATCH_HOST>:<SCANBATCH_PORT>); the token is read from "
        f"${TOKEN_ENV} (a musicDirector or stationManager key).",
    )
    p.add_argument("folder", type=Path, metavar="FOLDER", help="where to write the dataset")
    p.add_argument("--url", help=f"server URL (default ${URL_ENV} or the configured host/port)")
    p.add_argument("--since", help="only reviews after this ISO 8601 time")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    client = Client(args.url or _default_url(settings))
    if not client.token:
        print(f"scanbatch export: error: set {TOKEN_ENV} to your API token", file=sys.stderr)
        return 2
    folder = client.export_dataset(args.folder, since=args.since)
    truth = json.loads((folder / "truth.json").read_text())
    print(f"wrote {len(truth['items'])} reviewed item(s) to {folder}")
    return 0


def _default_url(settings: Settings) -> str:
    return os.environ.get(URL_ENV) or f"http://{settings.host}:{settings.port}"
