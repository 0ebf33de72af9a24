"""The station app's poll, `GET /library/scan/batch/<jobId>`: one answer (`job_answer`), given
by the Flask view and, ahead of Flask, by `JobPolls`.

The app polls every job it waits for every couple of seconds, so this is the server's most
frequent request. Its answer is already in memory (the store keeps each job's view until the job
changes, and its JSON body and ETag are made once per change, below); Flask's request machinery
(request context, URL map, Response object) is what costs: 0.2 of the 0.25 ms a poll took
in-process. `JobPolls` answers a poll straight from WSGI; anything that is not a well-formed poll
of a job the caller may see goes on to Flask, which answers it in the one error shape."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES, parse_etags, quote_etag

from scanbatch.models import BacklogState, JobView
from scanbatch.store import ApiKey
from scanbatch.web.auth import key_for, visible_to
from scanbatch.web.services import services_of

POLL_PREFIX = "/library/scan/batch/"
POLL_AFTER_SECONDS = 2
# A backlog job waiting for Google's Batch API (minutes to hours): asking every 2 s is waste.
BACKLOG_POLL_AFTER_SECONDS = 60
_AT_GOOGLE = (
    BacklogState.WAITING,
    BacklogState.SENDING,
    BacklogState.SUBMITTED,
    BacklogState.RUNNING,
)


def poll_after(view: JobView) -> str | None:
    """The Retry-After of an unfinished job's answer (None: finished, nothing to poll for)."""
    if view.status.finished:
        return None
    if view.backlog is not None and view.backlog.state in _AT_GOOGLE:
        return str(BACKLOG_POLL_AFTER_SECONDS)
    return str(POLL_AFTER_SECONDS)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def job_answer(app: Flask, key: ApiKey, job_id: str, if_none_match: str | None) -> Answer:
    """The job as `key` may see it: 200 with its JSON, or 304 while it is as `if_none_match`
    says (the app polls: an unchanged job costs it no body). Raises the store's NotFound or
    BadRequest."""
    view = services_of(app).store.get_job(job_id, visible_to(key))
    body, etag = _encoded(app, view)
    # The body belongs to one user and changes while the job runs: caches must ask each time.
    headers = [("ETag", quote_etag(etag)), ("Cache-Control", "private, no-cache")]
    if (after := poll_after(view)) is not None:
        headers.append(("Retry-After", after))
    if parse_etags(if_none_match).contains_weak(etag):
        return Answer(304, headers, b"")
    entity = [("Content-Type", app.json.mimetype), ("Content-Length", str(len(body)))]
    return Answer(200, entity + headers, body)


# The store returns the same view object until its job changes, so a view's JSON body and
# ETag are made once per change, not once per poll. Each entry holds its view, so an id() here
# is never reused by another object while the entry lives.
_ENCODED: OrderedDict[int, tuple[JobView, bytes, str]] = OrderedDict()
_ENCODED_SIZE = 1024
_encoded_lock = threading.Lock()


def _encoded(app: Flask, view: JobView) -> tuple[bytes, str]:
    with _encoded_lock:
        entry = _ENCODED.get(id(view))
    if entry is None:
        body = app.json.response(view.to_json_dict()).get_data()
        entry = (view, body, hashlib.sha256(body).hexdigest()[:32])
        with _encoded_lock:
            _ENCODED[id(view)] = entry
            if len(_ENCODED) > _ENCODED_SIZE:
                _ENCODED.popitem(last=False)
    return entry[1], entry[2]


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class JobPolls:
    """WSGI middleware in front of the Flask app (`app.wsgi_app = JobPolls(app)`): a GET of one
    job with a valid token is answered by `job_answer` here; every other request, and any poll
    that would be an error, goes to Flask unchanged."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.flask = app.wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = self._answer(environ) if _is_poll(environ) else None
        if answer is None:
            return self.flask(environ, start_response)
        start_response(_status_line(answer.status), answer.headers)
        return [answer.body]

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        try:
            key = key_for(environ.get("HTTP_AUTHORIZATION", ""), services_of(self.app))
            job_id = environ["PATH_INFO"][len(POLL_PREFIX) :]
            return job_answer(self.app, key, job_id, environ.get("HTTP_IF_NONE_MATCH"))
        except Exception:
            # Flask runs the same code again and answers whatever it was (401, 404, a bug's
            # 500) in the one error shape, logged as every other request's error is.
            return None


def _is_poll(environ: dict[str, Any]) -> bool:
    path = environ.get("PATH_INFO", "")
    return (
        environ.get("REQUEST_METHOD") == "GET"
        and path.startswith(POLL_PREFIX)
        and len(path) > len(POLL_PREFIX)
        and "/" not in path[len(POLL_PREFIX) :]
    )


def _status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES[status].upper()}"  # as werkzeug writes it
