import re

from pydantic.alias_generators import to_camel

from scanbatch.web.cors import CORS_PATHS
from scanbatch.web.openapi import openapi_document


def documented_routes(doc):
    return {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}


def app_routes(app):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + to_camel(m[1]) + "}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method))
    # Flask answers OPTIONS itself everywhere; the CORS preflight (scanbatch.web.cors) is ours.
    return routes | {(path, "OPTIONS") for path in CORS_PATHS}


def test_every_route_is_documented_and_nothing_else(app):
    assert app_routes(app) == documented_routes(openapi_document())


def test_served_document_describes_fields_and_errors(app):
    doc = app.test_client().get("/openapi.json").get_json()
    job = doc["components"]["schemas"]["JobView"]["properties"]
    for field in (
        "jobId",
        "status",
        "totalItems",
        "completedItems",
        "failedItems",
        "createdAt",
        "updatedAt",
        "results",
    ):
        assert field in job
    result = doc["components"]["schemas"]["ResultView"]["properties"]
    assert {"itemIndex", "extraction", "matchedAlbumId", "matchedAlbum", "errorMessage"} <= set(
        result
    )
    post = doc["paths"]["/library/scan/batch"]["post"]
    assert {"202", "400", "401", "403", "413", "422"} <= set(post["responses"])
    assert "Batch cannot exceed 10 items" in post["responses"]["400"]["description"]
    # Every $ref resolves.
    text = str(doc)
    for ref in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert ref in doc["components"]["schemas"], ref
