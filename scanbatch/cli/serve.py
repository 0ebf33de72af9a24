"""`scanbatch serve`: the HTTP API on a production WSGI server."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from scanbatch.cli import settings
from scanbatch.logfiles import FORMAT, log_to_file


@click.command("serve")
@click.option("--host", help="Address to bind (default SCANBATCH_HOST, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default SCANBATCH_PORT, 8000; 0: any)."
)
@click.option("--no-first-key", is_flag=True, help="Do not create a key on an empty store.")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the log, stdout and stderr to this file, rotated at SCANBATCH_LOG_MAX_BYTES "
    "(default: the terminal).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also process the shipped sample batch (data/sample/) and print what was read.",
)
def command(
    host: str | None, port: int | None, no_first_key: bool, log_file: Path | None, demo: bool
) -> None:
    """Run the HTTP API (owns the store; runs jobs through papermill).

    Serves the station's endpoints with waitress and resumes unfinished jobs on start. On a
    store with no API key, creates one and prints it with a curl example that submits the
    shipped sample batch.
    """
    from scanbatch.web.serve import serve

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    chosen = settings(**overrides)
    if log_file is None:
        logging.basicConfig(level=logging.INFO, format=FORMAT)
    else:
        log_to_file(log_file.absolute(), chosen.log_max_bytes, chosen.log_backups)
    serve(chosen, first_key=not no_first_key, demo=demo)
