"""One error shape everywhere: `{"status": <code>, "message": "<what is wrong and the fix>"}`,
for our own errors, for Flask's (404, 405, 413), for a full disk wherever a write finds it (507)
and for anything unexpected (500, logged, with no stack trace sent to the client)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from scanbatch.diskspace import is_disk_full
from scanbatch.errors import DiskFull, ScanbatchError
from scanbatch.web.services import services_of
from scanbatch.web.uploads import MAX_REQUEST_BYTES, request_too_large_message

log = logging.getLogger(__name__)


def error_response(status: int, message: str) -> Response:
    response = jsonify({"status": status, "message": message})
    response.status_code = status
    return response


def _http_message(exc: HTTPException) -> str:
    if exc.code == 404:
        return f"No such endpoint: {request.method} {request.path} (see /openapi.json)"
    if exc.code == 405:
        allowed = (
            ", ".join(sorted(exc.valid_methods or [])) if hasattr(exc, "valid_methods") else ""
        )
        return f"Method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    if exc.code == 413:
        return request_too_large_message(MAX_REQUEST_BYTES)
    return exc.description or exc.name


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ScanbatchError)
    def _ours(exc: ScanbatchError) -> Response:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc.message)
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _flask(exc: HTTPException) -> Response:
        response = error_response(exc.code or 500, _http_message(exc))
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if is_disk_full(exc):  # a write no route guards: still the full disk's 507, not a 500
            where = getattr(exc, "filename", None) or services_of(app).settings.data_dir
            return _ours(DiskFull(where))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error; the details are in the server log")
