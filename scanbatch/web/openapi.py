"""The OpenAPI 3.1 document of the HTTP API. `tests/test_web_openapi.py` checks that every
route of the app is described here and nothing else is."""

from __future__ import annotations

from typing import Any

from scanbatch import __version__
from scanbatch.models import JobList, JobView
from scanbatch.web.openapi_review import review_paths, review_schemas

_ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {
        "status": {"type": "integer", "description": "the HTTP status code"},
        "message": {"type": "string", "description": "what is wrong and how to fix it"},
    },
}


def _err(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_AUTH_ERRORS = {
    "401": _err("Missing, malformed, invalid or revoked API token"),
}
_JOB_ID = {
    "name": "jobId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_JOB_ERRORS = {
    "400": _err("Invalid job ID format"),
    **_AUTH_ERRORS,
    "404": _err("Job not found (missing, or another user's job)"),
}
_WRITE_ERRORS = {**_JOB_ERRORS, "403": _err("The caller's role may only read")}

SEED_MESSAGES = [
    "No images provided",
    "Missing or invalid manifest field",
    "Invalid JSON in manifest field",
    "Manifest must contain a non-empty items array",
    "Batch cannot exceed 10 items",
    "Total images cannot exceed 50",
    "Each item cannot exceed 5 images",
    "Image count mismatch: N files uploaded but manifest expects M",
]

_MANIFEST_ITEM = {
    "type": "object",
    "required": ["imageCount", "photoTypes"],
    "additionalProperties": False,
    "properties": {
        "imageCount": {"type": "integer", "minimum": 1, "maximum": 5},
        "photoTypes": {
            "type": "array",
            "items": {"type": "string"},
            "description": "one per image: front, back, photo, front_cover, center_label, ...",
        },
        "context": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "catalogItemId": {"type": "integer"},
                "stickerText": {"type": "string"},
                "detectedUPC": {"type": "string"},
                "artistName": {"type": "string"},
                "albumTitle": {"type": "string"},
            },
        },
    },
}


def openapi_document() -> dict[str, Any]:
    schemas = {
        "Error": _ERROR,
        "ManifestItem": _MANIFEST_ITEM,
        "Accepted": {
            "type": "object",
            "properties": {
                "jobId": {"type": "string", "format": "uuid"},
                "status": {
                    "type": "string",
                    "enum": ["pending", "processing", "completed", "failed"],
                },
                "totalItems": {"type": "integer"},
            },
        },
        "Job": JobView.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        ),
        "JobList": JobList.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        ),
    }
    # Pydantic nests the models it refers to under $defs; OpenAPI wants them as components.
    for name in ("Job", "JobList"):
        schemas.update(schemas[name].pop("$defs", {}))
    schemas.update(review_schemas())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scanbatch",
            "version": __version__,
            "description": "Batch scans of vinyl records: photos in, fields read and catalog "
            "matches out. Errors are always {status, message}.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": {
            "/library/scan/batch": {
                "post": {
                    "summary": "Submit a batch (musicDirector or stationManager)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 200},
                            "description": "the same key and request within 24 h returns the "
                            "same job; the same key with another request is a 422",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["images", "manifest"],
                                    "properties": {
                                        "images": {
                                            "type": "array",
                                            "maxItems": 50,
                                            "items": {"type": "string", "format": "binary"},
                                            "description": "JPEG, PNG, WebP or HEIC/HEIF, at "
                                            "most 10 MiB each, in manifest order",
                                        },
                                        "manifest": {
                                            "type": "string",
                                            "description": 'JSON: {"items": [ManifestItem]} '
                                            "or a bare [ManifestItem] array, 1 to 10 items",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            **_json("Accepted", "Accepted; poll the Location header's URL"),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        "400": _err(
                            "A seed check failed (" + "; ".join(SEED_MESSAGES) + ") "
                            "or a value is malformed; the message names the field"
                        ),
                        **_AUTH_ERRORS,
                        "403": _err("The caller's role may only read"),
                        "413": _err("A file over 10 MiB or a request over the limits"),
                        "422": _err("Idempotency-Key reused with a different request"),
                    },
                },
                "get": {
                    "summary": "The caller's jobs, newest first",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "default": 20,
                                "minimum": 1,
                                "maximum": 100,
                            },
                            "description": "clamped to 1..100",
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "default": 0, "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": _json("JobList", "A page of jobs"),
                        "400": _err("limit or offset is not a valid integer"),
                        **_AUTH_ERRORS,
                    },
                },
            },
            "/library/scan/batch/{jobId}": {
                "get": {
                    "summary": "A job with its results in item order",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": {
                            **_json("Job", "The job; Retry-After is set while it runs"),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                        **_JOB_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Cancel the job, then remove its rows and folder "
                    "(owner or stationManager)",
                    "parameters": [_JOB_ID],
                    "responses": {"204": {"description": "Deleted"}, **_WRITE_ERRORS},
                },
            },
            "/library/scan/batch/{jobId}/cancel": {
                "post": {
                    "summary": "Cancel: unfinished items fail with 'cancelled', finished ones "
                    "are kept (owner or stationManager)",
                    "parameters": [_JOB_ID],
                    "responses": {"200": _json("Job", "The job after cancelling"), **_WRITE_ERRORS},
                },
            },
            "/library/scan/batch/{jobId}/notebook": {
                "get": {
                    "summary": "The executed processing notebook as HTML (the audit trail)",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {}}},
                        **_JOB_ERRORS,
                    },
                },
            },
            **review_paths(),
            "/healthz": {
                "get": {
                    "summary": "Liveness, queue length and running jobs",
                    "security": [],
                    "responses": {"200": {"description": "OK"}},
                },
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                },
            },
        },
    }
