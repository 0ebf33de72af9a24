"""/openapi.json is generated from the models and describes what the app does: limits that
match behaviour, and a response checker (tests/webutil.py) that does catch a drift."""

import io
import json

import pytest
from pydantic.json_schema import models_json_schema

from scanbatch.models import JobView, ScanResponse
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import bearer, keys
from scanbatch.web import create_app, prepare, shutdown
from scanbatch.web.openapi import OPERATIONS, operation
from scanbatch.web.services import services_of
from tests.webutil import ResponseChecker


@pytest.fixture
def app(settings):
    """Without the conftest's checker: tests here feed the checker bad shapes on purpose."""
    app = create_app(settings)
    prepare(app)
    yield app
    shutdown(app)


def test_components_are_the_models_own_schemas(app):
    doc = app.test_client().get("/openapi.json").get_json()
    _, generated = models_json_schema(
        [(JobView, "serialization"), (ScanResponse, "serialization")],
        ref_template="#/components/schemas/{model}",
        by_alias=True,
    )
    for name, schema in generated["$defs"].items():
        assert doc["components"]["schemas"][name] == json.loads(json.dumps(schema)), name
    manifest = doc["components"]["schemas"]["Manifest"]
    assert manifest["properties"]["items"]["items"] == {"$ref": "#/components/schemas/ManifestItem"}


def test_documented_limits_are_the_enforced_ones(app):
    doc = app.test_client().get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    item = schemas["ManifestItem"]["properties"]
    assert (item["imageCount"]["minimum"], item["imageCount"]["maximum"]) == (1, 5)
    assert schemas["Manifest"]["properties"]["items"]["minItems"] == 1
    assert schemas["Manifest"]["properties"]["items"]["maxItems"] == 10
    batch = doc["paths"]["/library/scan/batch"]
    images = batch["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert (
        images["properties"]["images"]["minItems"],
        images["properties"]["images"]["maxItems"],
    ) == (1, 50)
    params = {p["name"]: p for p in batch["get"]["parameters"]}
    # limit is clamped to 1..100 (the station's contract): its schema claims only what is
    # refused, a number that is not 0 to 2**31 - 1 in ASCII digits (scanbatch.wholenumbers).
    assert params["limit"]["schema"]["maximum"] == 2**31 - 1
    assert "clamped" in params["limit"]["description"]
    assert params["offset"]["schema"]["minimum"] == 0


def test_clamping_and_offset_bounds_behave_as_documented(app):
    client = app.test_client()
    token = keys(services_of(app).store)["director"]
    doc = client.get("/openapi.json").get_json()
    offset = {p["name"]: p for p in doc["paths"]["/library/scan/batch"]["get"]["parameters"]}[
        "offset"
    ]["schema"]
    h = bearer(token)
    assert (
        client.get(f"/library/scan/batch?offset={offset['maximum']}", headers=h).status_code == 200
    )
    assert (
        client.get(f"/library/scan/batch?offset={offset['maximum'] + 1}", headers=h).status_code
        == 400
    )
    assert client.get("/library/scan/batch?limit=100000", headers=h).get_json()["limit"] == 100


def test_every_operation_documents_its_errors_in_the_one_shape(app):
    doc = app.test_client().get("/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "500" in op["responses"], (method, path)
            if op.get("security") != []:
                assert "401" in op["responses"], (method, path)
            for status, reply in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = reply["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorBody", (method, path, status)


def test_the_response_checker_catches_an_undocumented_shape(app, monkeypatch):
    checker = ResponseChecker(app)
    client = app.test_client()
    token = keys(services_of(app).store)["director"]
    store = services_of(app).store
    real = store.list_jobs

    def drifted(*args):
        page = real(*args)
        return type("Drifted", (), {"to_json_dict": lambda self: {**page.to_json_dict(), "x": 1}})()

    monkeypatch.setattr(store, "list_jobs", drifted)
    assert client.get("/library/scan/batch", headers=bearer(token)).status_code == 200
    assert any("Additional properties" in e for e in checker.errors), checker.errors
    checker.errors.clear()
    monkeypatch.undo()
    r = client.post(
        "/library/scan/batch",
        data={"images": [(io.BytesIO(image_bytes()), "a.jpg")], "manifest": "[]"},
        headers=bearer(token),
        content_type="multipart/form-data",
    )
    assert r.status_code == 400
    checker.assert_clean()
    assert checker.checked == 2


def test_a_route_is_documented_once():
    with pytest.raises(ValueError, match="documented twice"):
        operation("get", "/healthz", "again", responses={})
    assert sum(1 for o in OPERATIONS if o.path == "/healthz") == 1
