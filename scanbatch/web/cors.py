"""CORS for the workbench page, whose browser sends a crate straight to the batch route with an
upload ticket (scanbatch.web.tickets): that route alone answers another origin, and only the
pages in SCANBATCH_PAGE_ORIGINS. Every other route stays same-origin, so no other web site's
script can read an answer of this server."""

from __future__ import annotations

from flask import Flask, Response, request

from scanbatch.errors import Forbidden
from scanbatch.settings import Settings
from scanbatch.web.openapi import Reply, operation
from scanbatch.web.services import services

CORS_PATHS = frozenset({"/library/scan/batch"})
PREFLIGHT_MAX_AGE = 600  # seconds a browser may keep a preflight's answer


def headers(settings: Settings, path: str, origin: str | None) -> list[tuple[str, str]]:
    """The headers that let the page at `origin` read this answer (none for anyone else).
    Also asked by the server for the refusals it writes from a request's headers."""
    if origin and path in CORS_PATHS and origin in settings.allowed_page_origins:
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Expose-Headers", "Location, Retry-After"),
            ("Vary", "Origin"),
        ]
    return []


operation(
    "options",
    "/library/scan/batch",
    "CORS preflight of a workbench page's browser upload (scanbatch.web.tickets)",
    responses={
        200: Reply("Not a preflight (no Access-Control-Request-Method): the Allow header"),
        204: Reply("The page's origin is in SCANBATCH_PAGE_ORIGINS: it may POST a batch"),
        403: "Another origin: no page but those in SCANBATCH_PAGE_ORIGINS may send batches",
    },
)


def register(app: Flask) -> None:
    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        settings = services().settings
        allowed = headers(settings, request.path, request.headers.get("Origin"))
        if not allowed:
            raise Forbidden(
                f"{request.path} does not accept requests from the page at "
                f"{request.headers.get('Origin')}: only the pages in SCANBATCH_PAGE_ORIGINS may "
                "send batches from a browser"
            )
        response = Response(status=204)
        response.headers.extend(allowed)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Idempotency-Key"
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
        return response

    @app.after_request
    def _allow(response: Response) -> Response:
        if "Access-Control-Allow-Origin" not in response.headers:
            response.headers.extend(
                headers(services().settings, request.path, request.headers.get("Origin"))
            )
        return response
