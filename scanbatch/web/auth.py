"""Bearer tokens (API keys from `scanbatch keys create`, stored hashed) and roles:
`dj` may read; `musicDirector` and `stationManager` may read and write."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from flask import current_app, g, request

from scanbatch.errors import Forbidden, Unauthorized
from scanbatch.store import ApiKey

# Who the local CLI acts as through the server (see Services.admin_token).
LOCAL_ADMIN = ApiKey("local", "(local admin)", "stationManager", datetime.now(UTC), None)

_HOW = "send `Authorization: Bearer <token>` with a key from `scanbatch keys create`"


def current_key() -> ApiKey:
    """The caller's key, or 401. Cached on `g` for the request."""
    key = g.get("api_key")
    if key is not None:
        return key
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(f"Missing API token: {_HOW}")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"Malformed Authorization header: {_HOW}")
    svc = current_app.extensions["scanbatch"]
    token = token.strip()
    if hmac.compare_digest(token.encode(), svc.admin_token.encode()):
        key = LOCAL_ADMIN
    else:
        key = svc.store.authenticate(token)
    if key is None:
        raise Unauthorized(f"Invalid or revoked API token: {_HOW}")
    g.api_key = key
    return key


def require_write() -> ApiKey:
    key = current_key()
    if not key.can_write:
        raise Forbidden(
            f"Role '{key.role}' may only read; submitting or changing batches needs the "
            "musicDirector or stationManager role"
        )
    return key


def require_manager() -> ApiKey:
    key = current_key()
    if key.role != "stationManager":
        raise Forbidden(f"Role '{key.role}' may not manage API keys: that needs stationManager")
    return key
