"""Helpers for HTTP tests: multipart bodies and API keys."""

from __future__ import annotations

import json
import re

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


class ResponseChecker:
    """Validates every response an app sends against its own /openapi.json: the status must be
    documented for the route, and a JSON body must match the documented schema. Installed as
    an after-request hook, so every test that uses the app checks the contract as it goes."""

    def __init__(self, app) -> None:
        import jsonschema

        from scanbatch.web.openapi import openapi_document

        self.doc = openapi_document()
        self.errors: list[str] = []
        self.checked = 0
        self._validator = jsonschema.Draft202012Validator
        app.after_request(self._check)

    def _operation(self, request):
        from pydantic.alias_generators import to_camel

        rule = request.url_rule
        if rule is None:  # no route matched: Flask's own 404/405
            return None
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + to_camel(m[1]) + "}", rule.rule)
        return self.doc["paths"].get(path, {}).get(request.method.lower()), path

    def _check(self, response):
        from flask import request

        self.checked += 1
        where = f"{request.method} {request.path} -> {response.status_code}"
        found = self._operation(request)
        if found is None or found[0] is None:
            if not response.is_json or set(response.get_json()) != {"status", "message"}:
                self.errors.append(f"{where}: unrouted response is not the error shape")
            return response
        op, _path = found
        documented = op["responses"].get(str(response.status_code))
        if documented is None:
            self.errors.append(f"{where}: status not documented")
            return response
        content = documented.get("content")
        if content is None:
            if response.get_data():
                self.errors.append(f"{where}: body where none is documented")
            return response
        wildcard = response.mimetype.split("/")[0] + "/*"
        if response.mimetype not in content and wildcard not in content:
            self.errors.append(f"{where}: {response.mimetype} not documented ({list(content)})")
            return response
        schema = content[response.mimetype].get("schema")
        if response.mimetype == "application/json" and schema:
            root = {**schema, "components": self.doc["components"]}
            for err in self._validator(root).iter_errors(response.get_json()):
                self.errors.append(f"{where}: {err.json_path}: {err.message[:200]}")
        for header, spec in documented.get("headers", {}).items():
            is_int = spec["schema"].get("type") == "integer"
            if is_int and header in response.headers and not response.headers[header].isdigit():
                self.errors.append(f"{where}: header {header} is not an integer")
        return response

    def assert_clean(self) -> None:
        assert self.errors == [], "\n".join(self.errors)
