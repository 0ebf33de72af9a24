"""The OpenAPI 3.1 document, generated: every schema comes from the pydantic models in
`scanbatch.models` (the same ones that validate requests and build responses); each route
describes itself in a few lines with `operation(...)` next to its view function.

To document a new route, call `operation(...)` in its blueprint module:

    operation("get", "/library/scan/review/items", "Items to review",
              query=ReviewQuery, responses={200: ReviewList, 403: "dj may not review"})

A response is a model (JSON of that shape), a string (an error with that description), or a
`Reply` (anything else: no body, HTML, headers). 401 is added to every operation that is not
`public`, and 403 (an upload ticket shown to a route other than the batch POST).
`tests/test_web_openapi.py` checks that every Flask route is documented and nothing else, and
the test suite validates every response it receives against this document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from scanbatch import __version__
from scanbatch.models import ErrorBody

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Reply:
    """A response that is not a JSON model: `model=None` means no body (or a non-JSON one
    given by `content`)."""

    description: str
    model: type[BaseModel] | None = None
    content: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None


Response = type[BaseModel] | str | Reply


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    responses: Mapping[int, Response]
    query: type[BaseModel] | None = None
    json_body: type[BaseModel] | None = None
    body_required: bool = True  # False: the JSON body may be left out (its defaults apply)
    # Multipart bodies hold files, which are not models: their schema is written by hand,
    # with `$ref`s to the models of their JSON fields.
    multipart: dict[str, Any] | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    public: bool = False
    description: str = ""


OPERATIONS: list[Operation] = []

JOB_ID = {
    "name": "jobId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "description": "a job's UUID; anything else is a 400 `Invalid job ID format`",
}


def operation(
    method: str,
    path: str,
    summary: str,
    *,
    responses: Mapping[int, Response],
    **options: Any,
) -> Operation:
    """Document one route (see the module's docstring). Returns the entry, already listed."""
    op = Operation(method.lower(), path, summary, responses, **options)
    if any((o.method, o.path) == (op.method, op.path) for o in OPERATIONS):
        raise ValueError(f"{method.upper()} {path} is documented twice")
    OPERATIONS.append(op)
    return op


def _models(ops: list[Operation]) -> tuple[list[type[BaseModel]], list[type[BaseModel]]]:
    """(response models, request models), each once, in first-use order."""
    out: list[type[BaseModel]] = [ErrorBody]
    inputs: list[type[BaseModel]] = []
    for op in ops:
        for reply in op.responses.values():
            model = reply.model if isinstance(reply, Reply) else reply
            if isinstance(model, type) and model not in out:
                out.append(model)
        if op.json_body is not None and op.json_body not in inputs:
            inputs.append(op.json_body)
    return out, inputs


def components(
    extra_inputs: list[type[BaseModel]] = (),
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(schemas by name, the `$ref` of each model) for the documented operations."""
    outputs, inputs = _models(OPERATIONS)
    inputs = [m for m in [*inputs, *extra_inputs] if m not in outputs]
    keyed = [(m, "serialization") for m in outputs] + [(m, "validation") for m in inputs]
    refs, top = models_json_schema(keyed, ref_template=REF, by_alias=True)
    return top.get("$defs", {}), {model: ref for (model, _mode), ref in refs.items()}


_REASONS = {200: "OK", 201: "Created", 202: "Accepted"}


def _content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def _reply(status: int, reply: Response, refs: dict) -> dict[str, Any]:
    if isinstance(reply, str):
        return {"description": reply, "content": _content(refs[ErrorBody])}
    if isinstance(reply, Reply):
        out: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            out["content"] = _content(refs[reply.model])
        elif reply.content is not None:
            out["content"] = reply.content
        if reply.headers:
            out["headers"] = {k: {"schema": v} for k, v in reply.headers.items()}
        return out
    return {"description": _REASONS.get(status, "OK"), "content": _content(refs[reply])}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with `#/$defs/X` references replaced by X (a query parameter's schema must stand
    alone: an Enum field would otherwise point into the model's own `$defs`)."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[ref.removeprefix("#/$defs/")], defs), **siblings}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(_inline(prop, defs))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _operation(op: Operation, refs: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary}
    if op.description:
        out["description"] = op.description
    params = list(op.parameters)
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        out["parameters"] = params
    if op.json_body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": _content(refs[op.json_body]),
        }
    if op.multipart is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": op.multipart}},
        }
    responses = dict(op.responses)
    if op.json_body is not None:
        from scanbatch.web.uploads import MAX_JSON_BYTES

        responses.setdefault(
            413, f"The JSON body is over {MAX_JSON_BYTES:,} bytes, the limit for JSON bodies"
        )
    if not op.public:
        responses.setdefault(401, "Missing, malformed, invalid or revoked API token")
        if (op.method, op.path) != ("post", "/library/scan/batch"):
            responses.setdefault(403, "An upload ticket, which only sends one batch")
    responses.setdefault(500, "Unexpected server error; the details are in the server log")
    if op.method not in ("get", "head"):  # anything that writes may find the disk full
        responses.setdefault(
            507,
            "The disk holding the store or the job folders is full: nothing was saved; free "
            "some space and send the same request again",
        )
    out["responses"] = {
        str(status): _reply(status, reply, refs) for status, reply in sorted(responses.items())
    }
    if op.public:
        out["security"] = []
    return out


def openapi_document() -> dict[str, Any]:
    from scanbatch.models import Manifest

    # The manifest travels as a JSON string inside multipart, so no operation names it as a
    # body; it is still a component, for clients and for the `manifest` field's description.
    schemas, refs = components([Manifest])
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scanbatch",
            "version": __version__,
            "description": "Scans of vinyl records: photos in, fields read and catalog matches "
            'out. Every error is {"status", "message"}. A stationManager administers every '
            "job (read, cancel, delete) and the API keys; other users see only their own jobs.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
