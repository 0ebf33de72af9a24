"""Bearer tokens (API keys from `scanbatch keys create`, stored hashed) and roles:
`dj` may read; `musicDirector` and `stationManager` may read and write."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from flask import g, request

from scanbatch.errors import Forbidden, Unauthorized
from scanbatch.names import LOCAL_ADMIN_USER, Role
from scanbatch.store import ApiKey
from scanbatch.tickets import is_ticket
from scanbatch.web.services import Services, services

# Who the local CLI acts as through the server (see Services.admin_token).
LOCAL_ADMIN = ApiKey("local", LOCAL_ADMIN_USER, Role.STATION_MANAGER, datetime.now(UTC), None)

# The one route an upload ticket (scanbatch.tickets) may be used on.
TICKET_ROUTE = ("POST", "/library/scan/batch")
_HOW = "send `Authorization: Bearer <token>` with a key from `scanbatch keys create`"


def current_key() -> ApiKey:
    """The caller's key, or 401. Cached on `g` for the request."""
    key = g.get("api_key")
    if key is None:
        key = g.api_key = key_for(request.headers.get("Authorization", ""), services())
    if key.ticket and (request.method, request.path) != TICKET_ROUTE:
        raise Forbidden(
            "An upload ticket only sends one batch (POST /library/scan/batch): use an API key "
            "for anything else"
        )
    return key


def key_for(authorization: str, svc: Services) -> ApiKey:
    """The key an `Authorization` header names, or 401 saying what to send."""
    scheme, _, token = authorization.partition(" ")
    if not authorization:
        raise Unauthorized(f"Missing API token: {_HOW}")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"Malformed Authorization header: {_HOW}")
    token = token.strip()
    if hmac.compare_digest(token.encode(), svc.admin_token.encode()):
        return LOCAL_ADMIN
    if is_ticket(token):
        key = svc.tickets.key(token)
        if key.id != LOCAL_ADMIN.id and not svc.store.keys.is_active(key.id):
            raise Unauthorized(
                "The API key that made this upload ticket was revoked: sign in again"
            )
        return key
    key = svc.store.keys.authenticate(token)
    if key is None:
        raise Unauthorized(f"Invalid or revoked API token: {_HOW}")
    return key


def visible_to(key: ApiKey) -> str | None:
    """The owner filter for a caller: a stationManager administers every job (None: any
    owner); everyone else sees only their own."""
    return None if key.role == Role.STATION_MANAGER else key.user_id


def require_write() -> ApiKey:
    return check_write(current_key())


def check_write(key: ApiKey) -> ApiKey:
    """The key if its role may write, else 403 (also asked by the server from a request's
    headers, before an upload's body is read: scanbatch.web.serve)."""
    if not key.can_write:
        raise Forbidden(
            f"Role '{key.role}' may only read; submitting or changing batches needs the "
            "musicDirector or stationManager role"
        )
    return key


def require_manager(what: str = "manage API keys") -> ApiKey:
    key = current_key()
    if key.role != Role.STATION_MANAGER:
        raise Forbidden(f"Role '{key.role}' may not {what}: that needs stationManager")
    return key
