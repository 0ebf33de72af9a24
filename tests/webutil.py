"""Helpers for HTTP tests: multipart bodies and API keys."""

from __future__ import annotations

import json

from tests.imaging import image_bytes


def batch_files(n_items=2, per_item=1, fmt="JPEG", contexts=None):
    """(manifest JSON string, list of (filename, bytes)) for a simple batch."""
    items = []
    for i in range(n_items):
        item = {"imageCount": per_item, "photoTypes": ["front"] * per_item}
        if contexts is not None:
            item["context"] = contexts[i]
        items.append(item)
    files = [(f"IMG_{i}.jpg", image_bytes(fmt)) for i in range(n_items * per_item)]
    return json.dumps({"items": items}), files


def keys(store):
    """Tokens for a director, a second director, a dj and a station manager."""
    out = {}
    for name, user, role in (
        ("director", "alice", "musicDirector"),
        ("other", "bob", "musicDirector"),
        ("dj", "dave", "dj"),
        ("manager", "mia", "stationManager"),
    ):
        out[name] = store.create_key(user, role)[1]
    return out


def bearer(token):
    return {"Authorization": f"Bearer {token}"}
