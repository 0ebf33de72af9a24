"""`scanbatch keys create|list|revoke`: API keys for the HTTP API, stored hashed."""

from __future__ import annotations

import argparse

from scanbatch.settings import Settings
from scanbatch.store import ROLES, JobStore


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="Manage API keys", description=__doc__)
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=type(keys))
    keys_sub.required = True

    create = keys_sub.add_parser(
        "create",
        help="Issue a key; prints the token alone on stdout, once",
        description="Issue an API key bound to a user and a role. The token is printed once "
        "and stored only as a hash: keep it.",
    )
    create.add_argument("--user", required=True, help="user the key acts as")
    create.add_argument("--role", required=True, choices=ROLES, help="dj may read; others write")
    create.set_defaults(func=_create)

    ls = keys_sub.add_parser("list", help="List keys (never the tokens)")
    ls.set_defaults(func=_list)

    revoke = keys_sub.add_parser("revoke", help="Revoke a key by its id (see `keys list`)")
    revoke.add_argument("key_id", help="the key's id, e.g. k_1a2b3c4d")
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    store = JobStore.open(settings.store_path)
    try:
        _key, token = store.create_key(args.user, args.role)
    finally:
        store.close()
    print(token)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    store = JobStore.open(settings.store_path)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    print(f"{'ID':<12} {'USER':<20} {'ROLE':<15} {'CREATED':<26} REVOKED")
    for k in keys:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
        created = k.created_at.isoformat(timespec="seconds")
        print(f"{k.id:<12} {k.user_id:<20} {k.role:<15} {created:<26} {revoked}")
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    store = JobStore.open(settings.store_path)
    try:
        store.revoke_key(args.key_id)
    finally:
        store.close()
    print(f"revoked {args.key_id}")
    return 0
