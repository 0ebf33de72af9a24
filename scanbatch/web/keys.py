"""API keys through the running server (the server holds the store, so `scanbatch keys` goes
through here while it runs). stationManager only; effective at once: the store's token cache
is this process's, and revoking clears it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from scanbatch.models import KeyCreate, KeyCreated, KeyList, KeyView
from scanbatch.store import ApiKey
from scanbatch.web.auth import require_manager
from scanbatch.web.forms import json_body
from scanbatch.web.openapi import operation
from scanbatch.web.services import services

bp = Blueprint("keys", __name__, url_prefix="/admin/keys")

FORBIDDEN = "Only a stationManager may manage API keys"


def _view(key: ApiKey) -> KeyView:
    return KeyView(
        id=key.id,
        user_id=key.user_id,
        role=key.role,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


operation(
    "get",
    "/admin/keys",
    "Every API key (never the tokens)",
    responses={200: KeyList, 403: FORBIDDEN},
)


@bp.get("")
def list_keys() -> Response:
    require_manager()
    keys = services().store.keys.list_all()
    return jsonify(KeyList(keys=[_view(k) for k in keys]).to_json_dict())


operation(
    "post",
    "/admin/keys",
    "Issue a key for a user and role; the token is in this answer only",
    json_body=KeyCreate,
    responses={201: KeyCreated, 400: "user or role missing or invalid", 403: FORBIDDEN},
)


@bp.post("")
def create_key() -> Response:
    require_manager()
    body = json_body(KeyCreate)
    key, token = services().store.keys.create(body.user.strip(), body.role)
    response = jsonify(KeyCreated(**_view(key).model_dump(), token=token).to_json_dict())
    response.status_code = 201
    return response


operation(
    "delete",
    "/admin/keys/{keyId}",
    "Revoke a key; requests with its token are refused from now on",
    parameters=[{"name": "keyId", "in": "path", "required": True, "schema": {"type": "string"}}],
    responses={200: KeyView, 403: FORBIDDEN, 404: "No active key with that id"},
)


@bp.delete("/<key_id>")
def revoke_key(key_id: str) -> Response:
    require_manager()
    key = services().store.keys.revoke(key_id)
    return jsonify(_view(key).to_json_dict())
