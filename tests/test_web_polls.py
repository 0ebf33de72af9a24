"""The job poll answered ahead of Flask (scanbatch.web.polls.JobPolls): byte for byte what
Flask's own route answers, and everything that is not a well-formed poll of a visible job left
to Flask, in the one error shape."""

from __future__ import annotations

import flask
import pytest
from werkzeug.test import Client

from scanbatch.models import Manifest
from scanbatch.testing.servers import bearer, keys
from scanbatch.web import create_app, prepare, shutdown
from scanbatch.web.polls import JobPolls
from scanbatch.web.services import services_of
from tests.test_job_views import outcome


@pytest.fixture
def polled(settings):
    """The app as the server runs it, the same app with Flask alone, and a list that records
    each request Flask itself handled."""
    app = create_app(settings)
    prepare(app)
    assert isinstance(app.wsgi_app, JobPolls)
    handled: list[str] = []

    def started(sender, **extra):
        handled.append(f"{flask.request.method} {flask.request.path}")

    flask.request_started.connect(started, app)
    yield app, Client(app), Client(app.wsgi_app.flask), handled
    flask.request_started.disconnect(started, app)
    shutdown(app)


def answer(response) -> tuple[str, list[tuple[str, str]], bytes]:
    return response.status, sorted(response.headers.to_wsgi_list()), response.get_data()


def test_a_poll_is_answered_before_flask_exactly_as_flask_answers_it(polled):
    app, client, flask_only, handled = polled
    store = services_of(app).store
    tokens = keys(store)
    manifest = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}] * 2})
    job_id = store.create_job("alice", manifest)
    url = f"/library/scan/batch/{job_id}"
    director, manager = bearer(tokens["director"]), bearer(tokens["manager"])

    def same(headers: dict[str, str], path: str = url) -> tuple[str, list, bytes]:
        handled.clear()
        ours = answer(client.get(path, headers=headers))
        assert handled == []  # Flask never saw it
        assert ours == answer(flask_only.get(path, headers=headers))
        return ours

    status, headers, body = same(director)
    assert status == "200 OK" and ("Retry-After", "2") in headers and job_id.encode() in body
    etag = dict(headers)["ETag"]
    assert same(manager)[2] == body  # a stationManager sees any job
    assert same(director, url.upper().replace("/LIBRARY/SCAN/BATCH", "/library/scan/batch"))
    for sent in (etag, f"W/{etag}", f'"other", {etag}'):
        status, headers, body = same({**director, "If-None-Match": sent})
        assert status == "304 NOT MODIFIED" and body == b"" and dict(headers)["ETag"] == etag
    assert same({**director, "If-None-Match": '"not-it"'})[0] == "200 OK"

    store.record_outcomes(job_id, [outcome(0), outcome(1)])
    status, headers, body = same({**director, "If-None-Match": etag})
    assert status == "200 OK" and b'"completed"' in body
    assert "Retry-After" not in dict(headers)  # finished: nothing more to poll for


def test_what_is_not_a_good_poll_is_answered_by_flask_in_the_one_error_shape(polled):
    app, client, _flask_only, handled = polled
    store = services_of(app).store
    tokens = keys(store)
    job_id = store.create_job(
        "alice", Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}]})
    )
    url = f"/library/scan/batch/{job_id}"
    cases = [
        ("GET", url, {}, 401, "Missing API token"),
        ("GET", url, {"Authorization": "Basic abc"}, 401, "Malformed Authorization header"),
        ("GET", url, bearer("sb_nonsense"), 401, "Invalid or revoked API token"),
        ("GET", url, bearer(tokens["other"]), 404, "Job not found"),
        ("GET", "/library/scan/batch/not-a-uuid", bearer(tokens["director"]), 400, "Invalid job"),
        ("GET", url + "/notebook", bearer(tokens["director"]), 404, "notebook"),
        ("POST", url, bearer(tokens["director"]), 405, "Method POST is not allowed"),
    ]
    for method, path, headers, status, message in cases:
        handled.clear()
        response = client.open(path, method=method, headers=headers)
        assert handled == [f"{method} {path}"]
        assert response.status_code == status
        assert set(response.get_json()) == {"status", "message"}
        assert message in response.get_json()["message"], (path, response.get_json())
    handled.clear()
    head = client.head(url, headers=bearer(tokens["director"]))
    assert head.status_code == 200 and handled == [f"HEAD {url}"]


def test_an_unexpected_error_in_a_poll_is_flasks_500_not_a_traceback(polled, monkeypatch):
    app, client, _flask_only, handled = polled
    store = services_of(app).store
    tokens = keys(store)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "get_job", broken)
    url = "/library/scan/batch/00000000-0000-4000-8000-000000000000"
    response = client.get(url, headers=bearer(tokens["director"]))
    assert handled == [f"GET {url}"]
    assert response.status_code == 500
    assert response.get_json() == {
        "status": 500,
        "message": "Internal server error; the details are in the server log",
    }
    assert b"disk on fire" not in response.get_data()
