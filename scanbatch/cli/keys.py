"""`scanbatch keys create|list|revoke`: API keys for the HTTP API, stored hashed.

The store has one owner process. When a server holds it, these commands go through that
server's `/admin/keys` routes (its address and a local stationManager token are in
`<data dir>/server.json`, readable only by the data dir's owner), so a key works at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import click

from scanbatch.cli.through_server import local_or_server
from scanbatch.names import Role
from scanbatch.store import ApiKey


@click.group("keys")
def command() -> None:
    """Manage API keys (through the server while it runs).

    While `scanbatch serve` holds the store, these commands go through its /admin/keys routes
    with the local token in <data dir>/server.json, so a new key works at once.
    """


def _key(d: dict[str, Any]) -> ApiKey:
    revoked = d.get("revokedAt")
    return ApiKey(
        d["id"],
        d["userId"],
        d["role"],
        datetime.fromisoformat(d["createdAt"]),
        datetime.fromisoformat(revoked) if revoked else None,
    )


@command.command("create")
@click.option("--user", required=True, help="User the key acts as.")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in Role]),
    help="dj may read; musicDirector and stationManager may also write.",
)
def create(user: str, role: str) -> None:
    """Issue a key bound to a user and a role. The token is printed once, alone on stdout,
    and stored only as a hash: keep it."""
    _key_obj, token = local_or_server(
        lambda store: store.keys.create(user, role),
        lambda server: (
            None,
            server.call("POST", "/admin/keys", json={"user": user, "role": role})["token"],
        ),
    )
    click.echo(token)


@command.command("list")
def list_() -> None:
    """List keys (never the tokens)."""
    keys = local_or_server(
        lambda store: store.keys.list_all(),
        lambda server: [_key(k) for k in server.call("GET", "/admin/keys")["keys"]],
    )
    click.echo(f"{'ID':<12} {'USER':<20} {'ROLE':<15} {'CREATED':<26} REVOKED")
    for k in keys:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
        created = k.created_at.isoformat(timespec="seconds")
        click.echo(f"{k.id:<12} {k.user_id:<20} {k.role:<15} {created:<26} {revoked}")


@command.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (see `keys list`), e.g. k_1a2b3c4d."""
    local_or_server(
        lambda store: store.keys.revoke(key_id),
        lambda server: server.call("DELETE", f"/admin/keys/{quote(key_id, safe='')}"),
    )
    click.echo(f"revoked {key_id}")
