"""JSON bodies (a review, a new key) have their own limit, far below the upload's 501 MiB: refused
from Content-Length before anything is read, and counted while reading a chunked body."""

import io
import json

import pytest
import requests

from scanbatch.audit import MAX_NOTE_CHARS, MAX_VALUE_CHARS
from scanbatch.testing.servers import bearer
from scanbatch.web.services import services_of
from scanbatch.web.uploads import MAX_JSON_BYTES
from tests.test_web_review import TRUTH, make_job, review_body

LIMIT_WORDS = f"at most {MAX_JSON_BYTES:,} bytes"


class Unreadable(io.BytesIO):
    """A body the app must not read: the limit is decided from the headers."""

    def read(self, *args):
        raise AssertionError("the body was read")

    read1 = readinto = readline = read


class Counting(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.fixture
def job(client, app, tokens):
    return make_job(client, services_of(app).store, tokens["director"], [{}])


def test_the_largest_valid_review_fits_the_limit(client, tokens, job):
    # Every field and the note at their maximum, in characters JSON escapes as surrogate pairs.
    full = "\U0001f3b5" * MAX_VALUE_CHARS
    body = review_body(fields=dict.fromkeys(TRUTH, full), note="\U0001f3b5" * MAX_NOTE_CHARS)
    raw = json.dumps(body, ensure_ascii=True, indent=4).encode()
    assert len(raw) > 95_000  # close to the limit: it is not far larger than needed
    r = client.put(
        f"/library/scan/batch/{job}/items/0/review",
        data=raw,
        headers={**bearer(tokens["director"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("route", ["review", "keys"])
def test_a_declared_length_over_the_limit_is_413_before_reading(client, tokens, job, route):
    url, who = (
        (f"/library/scan/batch/{job}/items/0/review", "director")
        if route == "review"
        else ("/admin/keys", "manager")
    )
    method = client.put if route == "review" else client.post
    r = method(
        url,
        input_stream=Unreadable(b"{}"),
        # The test client would count the stream; a client declares what it will send.
        environ_overrides={"CONTENT_LENGTH": str(MAX_JSON_BYTES + 1)},
        headers={**bearer(tokens[who]), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    message = r.get_json()["message"]
    assert f"{MAX_JSON_BYTES + 1:,} bytes" in message and LIMIT_WORDS in message


def test_a_chunked_body_is_counted_while_read_and_cut_off(client, tokens, job):
    stream = Counting(b'{"note": "' + b"x" * (5 * MAX_JSON_BYTES) + b'"}')
    r = client.put(
        f"/library/scan/batch/{job}/items/0/review",
        input_stream=stream,
        headers={
            **bearer(tokens["director"]),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},  # as a server does for chunked
    )
    assert r.status_code == 413 and LIMIT_WORDS in r.get_json()["message"]
    assert stream.consumed <= MAX_JSON_BYTES + 64 * 1024  # stopped soon after the limit


def test_deep_nesting_is_a_400_not_a_500(client, tokens, job):
    r = client.put(
        f"/library/scan/batch/{job}/items/0/review",
        data="[" * 40_000 + "]" * 40_000,
        headers={**bearer(tokens["director"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "nests too deeply" in r.get_json()["message"]


def test_a_real_server_refuses_a_big_chunked_json_body(live_server, server_tokens):
    def body():
        yield b'{"user": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'", "role": "dj"}'

    r = requests.post(
        f"{live_server.url}/admin/keys",
        data=body(),  # a generator: requests sends it chunked, without Content-Length
        headers={**bearer(server_tokens["manager"]), "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413 and LIMIT_WORDS in r.json()["message"]
