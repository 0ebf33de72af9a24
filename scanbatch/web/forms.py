"""Reading request inputs strictly: multipart files, single-valued text fields, query strings
and JSON bodies, each validated by a pydantic model with a 400 that names the field."""

from __future__ import annotations

import json
from typing import TypeVar

from flask import request
from pydantic import BaseModel

from scanbatch.errors import BadRequest, PayloadTooLarge
from scanbatch.validation import validate_model
from scanbatch.web.uploads import MAX_JSON_BYTES, StagedFile, json_too_large_message

M = TypeVar("M", bound=BaseModel)

_CHUNK = 16 * 1024


def uploaded_images(hint: str) -> list[StagedFile]:
    """The `images` files in order. `No images provided` (the station's words) comes first for
    any request without them, multipart or not; `hint` says how to send them."""
    if not (request.mimetype or "").startswith("multipart/form-data"):
        raise BadRequest(f"No images provided: {hint}")
    unexpected = sorted(k for k in request.files if k != "images")
    if unexpected:
        raise BadRequest(f"Unexpected file field '{unexpected[0]}': send photos as 'images'")
    return [fs.stream for fs in request.files.getlist("images")]


def single_field(name: str) -> str | None:
    """A text field sent at most once, as UTF-8 (Werkzeug decodes invalid bytes to U+FFFD
    silently and keeps the first of repeated fields: both hide a client bug)."""
    values = request.form.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"'{name}' was sent {len(values)} times: send it once")
    if not values:
        return None
    if "\ufffd" in values[0]:
        raise BadRequest(f"'{name}' is not valid UTF-8 text: send it encoded as UTF-8")
    return values[0]


def query_args(model: type[M]) -> M:
    """The query string validated by `model` (a repeated parameter is a 400)."""
    data = {}
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise BadRequest(f"query parameter '{name}' was given {len(values)} times")
        data[name] = values[0]
    return validate_model(model, data, "")


def _too_large(size: str) -> PayloadTooLarge:
    return PayloadTooLarge(json_too_large_message(MAX_JSON_BYTES, size))


def _json_bytes() -> bytes:
    """The body, never more than MAX_JSON_BYTES of it: refused from Content-Length before
    anything is read, and counted while reading when there is none (chunked)."""
    declared = request.content_length
    if declared is not None and declared > MAX_JSON_BYTES:
        raise _too_large(f"{declared:,} bytes")
    stream = request.stream
    parts, total = [], 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        if total > MAX_JSON_BYTES:
            raise _too_large(f"over {MAX_JSON_BYTES:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


def json_body(model: type[M]) -> M:
    """The JSON body validated by `model`: every route's JSON body is read here."""
    if not request.is_json:
        raise BadRequest("Send a JSON body with Content-Type: application/json")
    raw = _json_bytes()
    try:
        data = json.loads(raw)
    except RecursionError:  # json.loads recurses once per level of nesting
        raise BadRequest("The body is not valid JSON: it nests too deeply") from None
    except ValueError:  # also bytes that are not UTF-8, and integers of over 4,300 digits
        raise BadRequest("The body is not valid JSON") from None
    return validate_model(model, data, "")
