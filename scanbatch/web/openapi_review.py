"""The OpenAPI paths and schemas of the review routes (`web/review.py`). The schemas are
generated from the pydantic models the routes speak, so the document cannot drift from them."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from scanbatch.models import MatchedAlbum
from scanbatch.review import ReviewInput, ReviewPage, ReviewView
from scanbatch.web.review import MAX_PAGE, MAX_SEARCH

_REF = "#/components/schemas/{model}"


def review_schemas() -> dict[str, Any]:
    _, doc = models_json_schema(
        [
            (m, "serialization" if m is not ReviewInput else "validation")
            for m in (ReviewPage, ReviewView, ReviewInput, MatchedAlbum)
        ],
        by_alias=True,
        ref_template=_REF,
    )
    schemas = doc["$defs"]
    schemas["Metrics"] = {
        "type": "object",
        "required": ["groupBy", "reviewedItems", "groups"],
        "properties": {
            "groupBy": {"type": "string"},
            "reviewedItems": {"type": "integer"},
            "groups": {
                "type": "array",
                "description": "per group (a prompt version, model or extractor; null with "
                "groupBy=none): items, per field n/accuracy/similarity/calibration/ece, "
                "overall calibration and ece, and match precision/recall",
                "items": {"type": "object"},
            },
        },
    }
    schemas["AlbumList"] = {
        "type": "object",
        "properties": {
            "albums": {"type": "array", "items": {"$ref": _REF.format(model="MatchedAlbum")}}
        },
    }
    schemas["ReviewHistory"] = {
        "type": "object",
        "properties": {
            "reviews": {"type": "array", "items": {"$ref": _REF.format(model="ReviewView")}}
        },
    }
    return schemas


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }


def _ok(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}},
    }


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_AUTH = {"401": _err("Missing, malformed, invalid or revoked API token")}
_REVIEWER = {**_AUTH, "403": _err("Only musicDirector and stationManager may audit")}
_ITEM = [
    _path("jobId", {"type": "string", "format": "uuid"}),
    _path("itemIndex", {"type": "integer", "minimum": 0}),
]


def review_paths() -> dict[str, Any]:
    return {
        "/library/scan/review/items": {
            "get": {
                "summary": "Every user's finished items to audit (lowest confidence first)",
                "parameters": [
                    _query("state", {"enum": ["unreviewed", "reviewed", "all"]}),
                    _query("sort", {"enum": ["confidence", "newest"]}),
                    _query("jobId", {"type": "string", "format": "uuid"}),
                    _query("userId", {"type": "string"}, "only this user's uploads"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                    _query("offset", {"type": "integer", "minimum": 0}),
                ],
                "responses": {
                    "200": _ok("ReviewPage", "A page of items"),
                    "400": _err("A filter, limit or offset is out of range"),
                    **_REVIEWER,
                },
            }
        },
        "/library/scan/batch/{jobId}/items/{itemIndex}/photos/{n}": {
            "get": {
                "summary": "A photo's original bytes, or with ?size=N a JPEG thumbnail",
                "parameters": [
                    *_ITEM,
                    _path("n", {"type": "integer", "minimum": 0}),
                    _query("size", {"type": "integer", "minimum": 16, "maximum": 4096}),
                ],
                "responses": {
                    "200": {"description": "The image", "content": {"image/*": {}}},
                    "400": _err("A malformed index or size"),
                    **_AUTH,
                    "404": _err("No such job (or not visible to the caller), item or photo"),
                },
            }
        },
        "/library/scan/batch/{jobId}/items/{itemIndex}/review": {
            "put": {
                "summary": "Save the item's truth; the review it replaces is kept as history",
                "parameters": _ITEM,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": _REF.format(model="ReviewInput")}}
                    },
                },
                "responses": {
                    "200": _ok("ReviewView", "The stored review with its verdicts"),
                    "400": _err("A bad body: the message names the field"),
                    **_REVIEWER,
                    "404": _err("No such job or item"),
                    "409": _err("The item has not finished yet"),
                },
            }
        },
        "/library/scan/batch/{jobId}/items/{itemIndex}/reviews": {
            "get": {
                "summary": "Every review of the item, oldest first",
                "parameters": _ITEM,
                "responses": {
                    "200": _ok("ReviewHistory", "The history"),
                    "400": _err("A malformed job id or index"),
                    **_REVIEWER,
                },
            }
        },
        "/library/scan/review/metrics": {
            "get": {
                "summary": "Accuracy, similarity, calibration and match precision/recall of "
                "reviewed items (the same code as `scanbatch eval`)",
                "parameters": [
                    _query("groupBy", {"enum": ["none", "promptVersion", "model", "extractor"]})
                ],
                "responses": {
                    "200": _ok("Metrics", "Figures per group"),
                    "400": _err("Unknown groupBy"),
                    **_REVIEWER,
                },
            }
        },
        "/library/scan/review/dataset": {
            "get": {
                "summary": "The golden set: a zip of every reviewed item in the dataset format",
                "parameters": [_query("since", {"type": "string", "format": "date-time"})],
                "responses": {
                    "200": {"description": "A zip, streamed", "content": {"application/zip": {}}},
                    "400": _err("since is not an ISO 8601 time"),
                    **_REVIEWER,
                },
            }
        },
        "/library/scan/catalog/search": {
            "get": {
                "summary": "Catalog albums whose artist and title hold every word of q (or id q)",
                "parameters": [
                    _query("q", {"type": "string", "minLength": 1, "maxLength": 200}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH}),
                ],
                "responses": {
                    "200": _ok("AlbumList", "Matching albums"),
                    "400": _err("q is empty or too long, or limit is out of range"),
                    **_AUTH,
                },
            }
        },
    }
