"""`scanbatch serve`: the HTTP API on a production WSGI server."""

from __future__ import annotations

import logging

import click

from scanbatch.cli import settings


@click.command("serve")
@click.option("--host", help="Address to bind (default SCANBATCH_HOST, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default SCANBATCH_PORT, 8000; 0: any)."
)
@click.option("--no-first-key", is_flag=True, help="Do not create a key on an empty store.")
@click.option(
    "--demo",
    is_flag=True,
    help="Also process the shipped sample batch (data/sample/) and print what was read.",
)
def command(host: str | None, port: int | None, no_first_key: bool, demo: bool) -> None:
    """Run the HTTP API (owns the store; runs jobs through papermill).

    Serves the station's endpoints with waitress and resumes unfinished jobs on start. On a
    store with no API key, creates one and prints it with a curl example that submits the
    shipped sample batch.
    """
    from scanbatch.web.serve import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    serve(settings(**overrides), first_key=not no_first_key, demo=demo)
