"""`scanbatch keys create|list|revoke`: API keys for the HTTP API, stored hashed.

The store has one owner process. When a server holds it, these commands go through that
server's `/admin/keys` routes (its address and a local stationManager token are in
`<data dir>/server.json`, readable only by the data dir's owner), so a key works at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import click

from scanbatch import server_file
from scanbatch.cli import settings
from scanbatch.errors import ScanbatchError, StoreLocked
from scanbatch.names import Role
from scanbatch.settings import Settings
from scanbatch.store import ApiKey, JobStore

T = TypeVar("T")


@click.group("keys")
def command() -> None:
    """Manage API keys (through the server while it runs).

    While `scanbatch serve` holds the store, these commands go through its /admin/keys routes
    with the local token in <data dir>/server.json, so a new key works at once.
    """


class ServerUnreachable(ScanbatchError):
    pass


class ServerClient:
    """The running server, as the local owner of its data dir."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_runtime_file(cls, s: Settings) -> ServerClient | None:
        found = server_file.read(s.data_dir)
        return None if found is None else cls(found.url, found.token)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            r = requests.request(
                method,
                self.url + path,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(f"The server at {self.url} did not answer: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"message": r.text[:200]}
        if r.status_code >= 400:
            raise ScanbatchError(f"{body.get('message')} (HTTP {r.status_code} from {self.url})")
        return body


def _local_or_server(local: Callable[[JobStore], T], remote: Callable[[ServerClient], T]) -> T:
    s = settings()
    try:
        store = JobStore.open(s.store_path)
    except StoreLocked as locked:
        client = ServerClient.from_runtime_file(s)
        if client is None:  # held by something that is not our server: say so
            raise
        try:
            return remote(client)
        except ServerUnreachable as exc:  # a stale file from a killed server
            raise ScanbatchError(f"{locked.message} ({exc.message})") from None
    try:
        return local(store)
    finally:
        store.close()


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
    _key_obj, token = _local_or_server(
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
    keys = _local_or_server(
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
    _local_or_server(
        lambda store: store.keys.revoke(key_id),
        lambda server: server.call("DELETE", f"/admin/keys/{quote(key_id, safe='')}"),
    )
    click.echo(f"revoked {key_id}")
