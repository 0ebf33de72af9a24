"""Helpers for HTTP tests: multipart bodies, posting a batch, and the contract checker."""

from __future__ import annotations

import json
import re

from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import bearer


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


def post_batch(url, token, manifest, files):
    """POST a batch to a real server at `url`: `manifest` a list of items, `files` a list of
    (name, bytes, content type); the job id of its 202."""
    import requests

    r = requests.post(
        f"{url}/library/scan/batch",
        data={"manifest": json.dumps(manifest)},
        files=[("images", f) for f in files],
        headers=bearer(token),
        timeout=30,
    )
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


class ContractChecker:
    """Checks responses against the app's /openapi.json: the status must be documented for the
    operation, the media type too, and a JSON body must match the documented schema. Errors
    are collected; `assert_clean()` fails the test that received a drifting response."""

    def __init__(self) -> None:
        import jsonschema

        import scanbatch.web  # noqa: F401  (its blueprints document their routes on import)
        from scanbatch.web.openapi import openapi_document

        self.doc = openapi_document()
        self.errors: list[str] = []
        self.checked = 0
        self._validator = jsonschema.Draft202012Validator
        self._templates = [
            (re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(p)) + "$"), p)
            for p in sorted(self.doc["paths"], key=lambda p: p.count("{"))
        ]

    def template_of(self, path: str) -> str | None:
        return next((t for rx, t in self._templates if rx.match(path)), None)

    def check(self, method, template, path, status, mimetype, body, headers) -> None:
        """`body` is the raw bytes; `template` the OpenAPI path, None when no route matched."""
        self.checked += 1
        where = f"{method} {path} -> {status}"
        op = self.doc["paths"].get(template, {}).get(method.lower()) if template else None
        if op is None:  # no route matched (or not this method): Flask's own 404/405
            try:
                shape = set(json.loads(body)) if mimetype == "application/json" else None
            except ValueError:
                shape = None
            if shape != {"status", "message"}:
                self.errors.append(f"{where}: unrouted response is not the error shape")
            return
        documented = op["responses"].get(str(status))
        if documented is None:
            self.errors.append(f"{where}: status not documented")
            return
        content = documented.get("content")
        if content is None:
            if body:
                self.errors.append(f"{where}: body where none is documented")
            return
        key = mimetype if mimetype in content else mimetype.split("/")[0] + "/*"
        if key not in content:
            self.errors.append(f"{where}: {mimetype} not documented ({list(content)})")
            return
        schema = content[key].get("schema")
        if mimetype == "application/json" and schema:
            root = {**schema, "components": self.doc["components"]}
            for err in self._validator(root).iter_errors(json.loads(body)):
                self.errors.append(f"{where}: {err.json_path}: {err.message[:200]}")
        for header, spec in documented.get("headers", {}).items():
            is_int = spec["schema"].get("type") == "integer"
            if is_int and header in headers and not headers[header].isdigit():
                self.errors.append(f"{where}: header {header} is not an integer")

    def assert_clean(self) -> None:
        assert self.errors == [], "\n".join(self.errors)


class ResponseChecker(ContractChecker):
    """Installed around a Flask app's WSGI callable, outermost, so every test that uses the app
    checks the contract on the bytes its client receives, including the polls that
    `scanbatch.web.polls.JobPolls` answers before Flask sees them."""

    def __init__(self, app) -> None:
        super().__init__()
        self._inner = app.wsgi_app
        app.wsgi_app = self._wsgi

    def _wsgi(self, environ, start_response):
        from werkzeug.datastructures import Headers

        seen = {}

        def record(status, headers, exc_info=None):
            seen["status"], seen["headers"] = int(status.split()[0]), Headers(headers)
            return start_response(status, headers, exc_info)

        out = self._inner(environ, record)
        try:
            body = b"".join(out)  # a file sent by send_file too, so its type can be checked
        finally:
            getattr(out, "close", lambda: None)()
        path = environ["PATH_INFO"]
        headers = seen["headers"]
        self.check(
            environ["REQUEST_METHOD"],
            self.template_of(path),
            path,
            seen["status"],
            headers.get("Content-Type", "").split(";")[0].strip(),
            body,
            headers,
        )
        return [body]
