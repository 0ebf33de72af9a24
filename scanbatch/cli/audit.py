"""`scanbatch audit`: how good the reader is on every finished record, from the running server
(the metrics route, through the HTTP client): the estimate over all records with its 95 %
interval beside the reviewed-only figure, per field, and what is left to review."""

from __future__ import annotations

import json

import click

from scanbatch.audit import GroupBy
from scanbatch.cli import server_client
from scanbatch.client import URL_ENV


@click.command("audit")
@click.option("--url", help=f"Server URL (default: ${URL_ENV}, else the configured host and port).")
@click.option(
    "--group-by",
    type=click.Choice([g.value for g in GroupBy]),
    default=GroupBy.NONE.value,
    show_default=True,
    help="One table per prompt version, model or extractor.",
)
@click.option("--since", help="Only records scanned at or after this ISO 8601 time (with zone).")
@click.option("--until", help="Only records scanned before this ISO 8601 time (with zone).")
@click.option("--json", "as_json", is_flag=True, help="Print the route's JSON body instead.")
def command(
    url: str | None, group_by: str, since: str | None, until: str | None, as_json: bool
) -> None:
    """Estimate the reader's accuracy on all finished records.

    Reviews taken from the Audit sample (the queue's `sort=audit`) are a random sample; from
    them, each field's accuracy over every record is estimated with a 95 % interval (see the
    README, Audit estimates). The token is read from $SCANBATCH_TOKEN (a musicDirector or
    stationManager key).
    """
    from scanbatch.metrics import format_table

    body = server_client(url).metrics(group_by, since=since, until=until)
    click.echo(json.dumps(body, indent=2) if as_json else format_table(body), nl=as_json)
