"""Reading request inputs strictly: multipart files, single-valued text fields, query strings
and JSON bodies, each validated by a pydantic model with a 400 that names the field."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel

from scanbatch.errors import BadRequest
from scanbatch.validation import validate_model
from scanbatch.web.uploads import StagedFile

M = TypeVar("M", bound=BaseModel)


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


def json_body(model: type[M]) -> M:
    if not request.is_json:
        raise BadRequest("Send a JSON body with Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("The body is not valid JSON")
    return validate_model(model, data, "")
