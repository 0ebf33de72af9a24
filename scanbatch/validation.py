"""The manifest checks of the station's contract, in its order and with its exact messages,
then a clear message naming the field for every other malformed value."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from scanbatch.errors import BadRequest
from scanbatch.models import Manifest

MAX_ITEMS = 10
MAX_IMAGES = 50
MAX_IMAGES_PER_ITEM = 5

_CONTEXT_TYPES = {
    "catalogItemId": "an integer",
    "stickerText": "a string",
    "detectedUPC": "a string",
    "artistName": "a string",
    "albumTitle": "a string",
}
_ITEM_KEYS = ("imageCount", "photoTypes", "context")


def parse_manifest(raw: str | bytes | None, file_count: int) -> Manifest:
    """Validate the multipart `manifest` field against `file_count` uploaded images."""
    if file_count == 0:
        raise BadRequest("No images provided")
    if raw is None or not isinstance(raw, str | bytes) or not str(raw).strip():
        raise BadRequest("Missing or invalid manifest field")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid JSON in manifest field") from None
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise BadRequest("Manifest must contain a non-empty items array")
    if isinstance(data, dict) and (extra := sorted(set(data) - {"items"})):
        raise BadRequest(f"manifest has unknown key '{extra[0]}': only 'items' is allowed")
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"Batch cannot exceed {MAX_ITEMS} items")
    counts = [_image_count(item, i) for i, item in enumerate(items)]
    expected = sum(counts)
    if max(expected, file_count) > MAX_IMAGES:
        raise BadRequest(f"Total images cannot exceed {MAX_IMAGES}")
    if any(c > MAX_IMAGES_PER_ITEM for c in counts):
        raise BadRequest(f"Each item cannot exceed {MAX_IMAGES_PER_ITEM} images")
    if file_count != expected:
        raise BadRequest(
            f"Image count mismatch: {file_count} files uploaded but manifest expects {expected}"
        )
    for i, item in enumerate(items):
        _check_item(item, i)
    try:
        return Manifest.model_validate({"items": items})
    except ValidationError as exc:  # every case above should have caught it first
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadRequest(f"manifest {where}: {err['msg']}") from None


def _image_count(item: Any, i: int) -> int:
    if not isinstance(item, dict):
        raise BadRequest(f"items[{i}] must be an object with imageCount and photoTypes")
    count = item.get("imageCount")
    # bool is an int in Python; `true` is not an image count.
    if "imageCount" not in item:
        raise BadRequest(f"items[{i}].imageCount is required: an integer from 1 to 5")
    if not isinstance(count, int) or isinstance(count, bool):
        raise BadRequest(
            f"items[{i}].imageCount must be an integer from 1 to 5, got {json.dumps(count)}"
        )
    if count < 1:
        raise BadRequest(f"items[{i}].imageCount must be at least 1, got {count}")
    return count


def _check_item(item: dict[str, Any], i: int) -> None:
    if extra := sorted(set(item) - set(_ITEM_KEYS)):
        raise BadRequest(
            f"items[{i}] has unknown key '{extra[0]}': allowed keys are {', '.join(_ITEM_KEYS)}"
        )
    types = item.get("photoTypes")
    if not isinstance(types, list) or not all(isinstance(t, str) and t.strip() for t in types):
        raise BadRequest(
            f'items[{i}].photoTypes must be a list of non-empty strings (e.g. ["front", "back"])'
        )
    if len(types) != item["imageCount"]:
        raise BadRequest(
            f"items[{i}].photoTypes has {len(types)} entries but imageCount is "
            f"{item['imageCount']}: give one photo type per image"
        )
    context = item.get("context")
    if context is None:
        return
    if not isinstance(context, dict):
        raise BadRequest(f"items[{i}].context must be an object")
    for key, value in context.items():
        if key not in _CONTEXT_TYPES:
            raise BadRequest(
                f"items[{i}].context has unknown key '{key}': allowed keys are "
                f"{', '.join(_CONTEXT_TYPES)}"
            )
        if value is None:
            continue
        ok = (
            isinstance(value, int) and not isinstance(value, bool)
            if key == "catalogItemId"
            else isinstance(value, str)
        )
        if not ok:
            raise BadRequest(
                f"items[{i}].context.{key} must be {_CONTEXT_TYPES[key]}, got {json.dumps(value)}"
            )
