"""The manifest checks of the station's contract, in its order and with its exact messages,
then a clear message naming the field for every other malformed value.

The shapes and bounds live on the pydantic models (`scanbatch.models`); this module runs the
station's ordered checks first and turns any other validation error of those models into one
sentence that names the field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from scanbatch.errors import BadRequest
from scanbatch.models import (
    MAX_IMAGES,
    MAX_IMAGES_PER_ITEM,
    MAX_ITEMS,
    DatasetManifest,
    JobMode,
    Manifest,
    ManifestItem,
)

__all__ = [
    "MAX_IMAGES",
    "MAX_IMAGES_PER_ITEM",
    "MAX_ITEMS",
    "MAX_MANIFEST_DEPTH",
    "batch_slices",
    "field_error",
    "parse_dataset_manifest",
    "parse_local_manifest",
    "parse_manifest",
]

# A valid manifest nests 4 deep ({"items": [{"context": {...}}]}); anything much deeper is an
# attack on the parser (json.loads recurses) or on whoever prints the value.
MAX_MANIFEST_DEPTH = 8

M = TypeVar("M", bound=BaseModel)

_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "uuid_parsing": "a UUID",
    "uuid_type": "a UUID",
    "datetime_parsing": "an ISO 8601 time with its zone, e.g. 2026-11-26T09:00:00Z",
    "datetime_from_date_parsing": "an ISO 8601 time with its zone, e.g. 2026-11-26T09:00:00Z",
    "timezone_aware": "an ISO 8601 time with its zone, e.g. 2026-11-26T09:00:00Z",
}


def parse_manifest(raw: str | bytes | None, file_count: int) -> Manifest:
    """Validate the multipart `manifest` field against `file_count` uploaded images."""
    data, items = _read_manifest(raw, file_count)
    if not isinstance(items, list) or not items:
        raise BadRequest("Manifest must contain a non-empty items array")
    if isinstance(data, dict) and (extra := sorted(set(data) - {"items", "mode"})):
        raise BadRequest(
            f"manifest has unknown key '{_short(extra[0])}': only 'items' and 'mode' are allowed"
        )
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
    mode = parse_mode(data.get("mode"), "manifest 'mode'") if isinstance(data, dict) else None
    return Manifest(items=[_item(item, i) for i, item in enumerate(items)], mode=mode)


def parse_mode(value: object, field: str = "mode") -> JobMode | None:
    """A job's `mode` (the form field, or the manifest's key): None when not given."""
    if value is None:
        return None
    try:
        return JobMode(value)
    except ValueError:
        modes = " or ".join(f"'{m.value}'" for m in JobMode)
        raise BadRequest(f"{field} must be {modes} (got {_short(str(value))!r})") from None


def job_mode(form_value: str | None, manifest: Manifest) -> JobMode:
    """The job's mode from the form field `mode` and the manifest's `mode` (they must agree
    when both are given); interactive by default."""
    form = parse_mode(form_value)
    if form is not None and manifest.mode is not None and form != manifest.mode:
        raise BadRequest(
            f"mode is '{form.value}' in the form but '{manifest.mode.value}' in the manifest: "
            "send one of them, or the same in both"
        )
    return form or manifest.mode or JobMode.INTERACTIVE


def _read_manifest(raw: str | bytes | None, file_count: int) -> tuple[Any, Any]:
    """The station's first three checks, in its order; then (the JSON, its items)."""
    if file_count == 0:
        raise BadRequest("No images provided")
    if raw is None or not isinstance(raw, str | bytes) or not str(raw).strip():
        raise BadRequest("Missing or invalid manifest field")
    data = _load_json(raw)
    items = data.get("items") if isinstance(data, dict) else data
    return data, items


def parse_local_manifest(raw: str | bytes | None, file_count: int) -> DatasetManifest:
    """A manifest for a local run (`scanbatch run`) against `file_count` photos: one that fits
    one batch is checked exactly as an upload is (`parse_manifest`: the station's order and
    messages); a bigger one is a dataset (`parse_dataset_manifest`), run as several batches."""
    data, items = _read_manifest(raw, file_count)
    if not isinstance(items, list) or len(items) <= MAX_ITEMS:
        return DatasetManifest(items=parse_manifest(raw, file_count).items)
    manifest = parse_dataset_manifest(data)
    if file_count != manifest.total_images:
        raise BadRequest(
            f"Image count mismatch: {file_count} files uploaded but manifest expects "
            f"{manifest.total_images}"
        )
    return manifest


def parse_dataset_manifest(data: Any) -> DatasetManifest:
    """A dataset's manifest (already parsed JSON, object or bare-array form): any number of
    items, each checked exactly as a batch item is (`_image_count`, then `_item`), with the
    same messages. The limits of one HTTP batch are not a dataset's: `batch_slices` splits it."""
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise BadRequest("Manifest must contain a non-empty items array")
    if isinstance(data, dict) and (extra := sorted(set(data) - {"items", "mode"})):
        raise BadRequest(
            f"manifest has unknown key '{_short(extra[0])}': only 'items' and 'mode' are allowed"
        )
    parsed = []
    for i, item in enumerate(items):
        _image_count(item, i)
        parsed.append(_item(item, i))
    return DatasetManifest(items=parsed)


def _item(item: dict[str, Any], i: int) -> ManifestItem:
    """One item whose imageCount `_image_count` accepted: its photo types, then its model."""
    types = item.get("photoTypes")
    if isinstance(types, list) and types and len(types) != item["imageCount"]:
        raise BadRequest(
            f"items[{i}].photoTypes has {len(types)} entries but imageCount is "
            f"{item['imageCount']}: give one photo type per image"
        )
    return validate_model(ManifestItem, item, f"items[{i}]")


def batch_slices(image_counts: Sequence[int]) -> list[range]:
    """Consecutive items split into batches the station accepts: at most MAX_ITEMS items and
    MAX_IMAGES images each (an item over MAX_IMAGES_PER_ITEM is `parse_manifest`'s to refuse).
    The one splitting rule, for the workbench's jobs and `scanbatch run` on a dataset."""
    slices: list[range] = []
    start, images = 0, 0
    for i, count in enumerate(image_counts):
        if i > start and (i - start >= MAX_ITEMS or images + count > MAX_IMAGES):
            slices.append(range(start, i))
            start, images = i, 0
        images += count
    if start < len(image_counts):
        slices.append(range(start, len(image_counts)))
    return slices


def _load_json(raw: str | bytes) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("Invalid JSON in manifest field: it is not UTF-8 text") from None
    too_deep = BadRequest(
        f"Invalid JSON in manifest field: nested more than {MAX_MANIFEST_DEPTH} levels deep "
        '(a manifest is {"items": [{"imageCount", "photoTypes", "context": {...}}]})'
    )
    try:
        data = json.loads(raw)
    except RecursionError:  # json.loads recurses once per level: a few thousand exhaust it
        raise too_deep from None
    except ValueError:
        raise BadRequest("Invalid JSON in manifest field") from None
    if _depth_over(data, MAX_MANIFEST_DEPTH):
        raise too_deep
    return data


def _depth_over(data: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit`; iterative, so any depth json.loads
    returned is safe to measure (printing or validating it would recurse)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _image_count(item: Any, i: int) -> int:
    if not isinstance(item, dict):
        raise BadRequest(f"items[{i}] must be an object with imageCount and photoTypes")
    count = item.get("imageCount")
    if "imageCount" not in item:
        raise BadRequest(f"items[{i}].imageCount is required: an integer from 1 to 5")
    # bool is an int in Python; `true` is not an image count.
    if not isinstance(count, int) or isinstance(count, bool):
        raise BadRequest(
            f"items[{i}].imageCount must be an integer from 1 to 5, got {_short(count)}"
        )
    if count < 1:
        raise BadRequest(f"items[{i}].imageCount must be at least 1, got {count}")
    return count


def validate_model(model: type[M], data: Any, where: str) -> M:
    """`model` validated from `data`, or a 400 naming the first bad field under `where`."""
    try:
        # by_name=False: the wire format is camelCase only, as the station sends it.
        return model.model_validate(data, by_name=False)
    except ValidationError as exc:
        raise BadRequest(field_error(exc, where, model)) from None


def field_error(exc: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """One sentence for the first error of `exc`: the field's path, what it must be, what came."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _path(where, loc[:-1]) or "the body"
        allowed = _allowed_keys(model, loc[:-1])
        hint = f": allowed keys are {', '.join(allowed)}" if allowed else ""
        return f"{parent} has unknown key '{_short(loc[-1])}'{hint}"
    path = _path(where, loc)
    if kind == "missing":
        return f"{path} is required"
    if loc and loc[0] in ("photoTypes", "photo_types") and kind != "value_error":
        return f'{_path(where, loc[:1])} must be a list of non-empty strings (e.g. ["front"])'
    if kind in _NAMES:
        return f"{path} must be {_NAMES[kind]}, got {_short(err.get('input'))}"
    ctx = err.get("ctx") or {}
    # scanbatch.wholenumbers, and checks worded to follow the field's name ("until must be…")
    if kind in ("whole_number", "worded"):
        return f"{path} {err['msg']}"
    if kind == "greater_than_equal":
        return f"{path} must be at least {ctx.get('ge')}, got {_short(err.get('input'))}"
    if kind == "less_than_equal":
        return f"{path} must be at most {ctx.get('le')}, got {_short(err.get('input'))}"
    if kind == "enum":
        return f"{path} must be one of {ctx.get('expected')}, got {_short(err.get('input'))}"
    if kind == "string_too_long":
        return f"{path} is too long: at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"{path} must not be empty"
    return f"{path}: {err['msg']}"


def _path(where: str, loc: list[str]) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _allowed_keys(model: type[BaseModel] | None, loc: list[str]) -> list[str]:
    """The wire names of the object at `loc` inside `model` (nested models and lists of them
    are followed), or [] when `loc` leads elsewhere."""
    for part in loc:
        if model is None:
            return []
        if part.isdigit():
            continue  # a list index: the list's item model is already the one found
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        found = fields.get(part) or model.model_fields.get(part)
        model = _model_in(found.annotation) if found is not None else None
    return [f.alias or name for name, f in model.model_fields.items()] if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
