"""Upload tickets and CORS on a real server: what the workbench page's browser does when it
sends a crate straight to the API (the kernel mints, the browser posts with the ticket), and
every way a ticket is refused."""

import time

import pytest
import requests

from scanbatch.client import ApiError, Client
from scanbatch.testing.servers import ServerProcess, bearer
from tests.webutil import batch_files

PAGE = "http://127.0.0.1:8866"
TICKET_SECONDS = 4


@pytest.fixture(scope="module")
def server(server_data_dir, server_tokens):
    srv = ServerProcess(
        server_data_dir,
        SCANBATCH_PAGE_ORIGINS=f"{PAGE},http://localhost:8866",
        SCANBATCH_UPLOAD_TICKET_SECONDS=str(TICKET_SECONDS),
    ).start()
    yield srv
    srv.stop()


def mint(server, token, files, origin=PAGE):
    client = Client(server.url, token)
    return client.upload_ticket(
        photos=len(files), bytes=sum(len(b) for _, b in files), origin=origin
    )


def browser_post(url, ticket, manifest, files, origin=PAGE):
    """What the page's JavaScript sends: the station's multipart body, the ticket as bearer,
    and the Origin header a browser adds to a cross-origin request."""
    return requests.post(
        url,
        data={"manifest": manifest},
        files=[("images", (name, data, "image/jpeg")) for name, data in files],
        headers={**bearer(ticket), "Origin": origin},
        timeout=30,
    )


def test_a_ticket_sends_one_batch_as_its_user(server, server_tokens):
    manifest, files = batch_files(n_items=3, per_item=2)
    ticket = mint(server, server_tokens["director"], files)
    assert ticket.ticket.startswith("sbt_") and ticket.url == f"{server.url}/library/scan/batch"
    assert (ticket.photos, ticket.bytes, ticket.origin) == (6, sum(len(b) for _, b in files), PAGE)

    r = browser_post(ticket.url, ticket.ticket, manifest, files)
    assert r.status_code == 202, r.text
    assert r.headers["Access-Control-Allow-Origin"] == PAGE  # the page may read the answer
    job_id = r.json()["jobId"]
    # The job is the minting user's: alice sees it, bob (another director) does not.
    assert Client(server.url, server_tokens["director"]).job(job_id).total_items == 3
    with pytest.raises(ApiError) as other:
        Client(server.url, server_tokens["other"]).job(job_id)
    assert other.value.status == 404

    again = browser_post(ticket.url, ticket.ticket, manifest, files)
    assert again.status_code == 401 and "already used" in again.json()["message"]
    # Refused from its headers, before the body was read, and still readable by the page.
    assert again.headers["Access-Control-Allow-Origin"] == PAGE


def test_a_ticket_for_another_size_or_page_is_refused_and_used_up(server, server_tokens):
    manifest, files = batch_files(n_items=2, per_item=1)
    ticket = mint(server, server_tokens["director"], files[:1])  # minted for one photo
    r = browser_post(ticket.url, ticket.ticket, manifest, files)
    assert r.status_code == 403
    assert "for 1 photo(s)" in r.json()["message"] and "carries 2" in r.json()["message"]
    assert browser_post(ticket.url, ticket.ticket, manifest, files).status_code == 401

    bigger = [(files[0][0], files[0][1] + b"\0" * 10), files[1]]
    ticket = mint(server, server_tokens["director"], bigger)
    r = browser_post(ticket.url, ticket.ticket, manifest, files)
    assert r.status_code == 403 and "bytes" in r.json()["message"]

    ticket = mint(server, server_tokens["director"], files, origin="http://localhost:8866")
    r = browser_post(ticket.url, ticket.ticket, manifest, files, origin=PAGE)
    assert r.status_code == 403
    assert "made for the page at http://localhost:8866" in r.json()["message"]
    assert Client(server.url, server_tokens["director"]).jobs().total == 1  # only the first test's


def test_an_expired_ticket_is_refused(server, server_tokens):
    manifest, files = batch_files(n_items=1)
    ticket = mint(server, server_tokens["director"], files)
    time.sleep(TICKET_SECONDS + 0.5)
    r = browser_post(ticket.url, ticket.ticket, manifest, files)
    assert r.status_code == 401 and "expired at" in r.json()["message"]


def test_a_ticket_opens_no_other_route(server, server_tokens):
    manifest, files = batch_files(n_items=1)
    ticket = mint(server, server_tokens["director"], files)
    for method, path in (
        ("GET", "/library/scan/batch"),
        ("GET", "/library/scan/review/items"),
        ("POST", "/library/scan/upload-tickets"),
    ):
        r = requests.request(
            method, f"{server.url}{path}", headers=bearer(ticket.ticket), json={}, timeout=30
        )
        assert r.status_code == 403, (path, r.text)
        assert "upload ticket" in r.json()["message"]
    single = requests.post(
        f"{server.url}/library/scan",
        files=[("images", files[0])],
        headers=bearer(ticket.ticket),
        timeout=30,
    )
    assert single.status_code == 403
    # Still unused: refusing those did not spend it.
    assert browser_post(ticket.url, ticket.ticket, manifest, files).status_code == 202


def test_a_ticket_dies_with_the_key_that_minted_it(server, server_tokens):
    manager = Client(server.url, server_tokens["manager"])
    token = manager._json("POST", "/admin/keys", json={"user": "carol", "role": "musicDirector"})
    manifest, files = batch_files(n_items=1)
    ticket = mint(server, token["token"], files)
    manager._request("DELETE", f"/admin/keys/{token['id']}")
    r = browser_post(ticket.url, ticket.ticket, manifest, files)
    assert r.status_code == 401 and "was revoked" in r.json()["message"]


def test_who_may_mint_and_for_which_page(server, server_tokens):
    with pytest.raises(ApiError) as dj:
        Client(server.url, server_tokens["dj"]).upload_ticket(photos=1, bytes=10, origin=PAGE)
    assert dj.value.status == 403
    with pytest.raises(ApiError) as elsewhere:
        Client(server.url, server_tokens["director"]).upload_ticket(
            photos=1, bytes=10, origin="http://evil.example"
        )
    assert elsewhere.value.status == 400
    assert "SCANBATCH_PAGE_ORIGINS" in elsewhere.value.message
    for body, field in (
        ({"photos": 0, "bytes": 10, "origin": PAGE}, "photos"),
        ({"photos": 51, "bytes": 10, "origin": PAGE}, "photos"),
        ({"photos": 1, "bytes": "10", "origin": PAGE}, "bytes"),
        ({"photos": 1, "bytes": 10}, "origin"),
    ):
        r = requests.post(
            f"{server.url}/library/scan/upload-tickets",
            json=body,
            headers=bearer(server_tokens["director"]),
            timeout=30,
        )
        assert r.status_code == 400 and field in r.json()["message"], (body, r.text)
    r = requests.post(
        f"{server.url}/library/scan/upload-tickets",
        json={"photos": 1, "bytes": 10, "origin": PAGE},
        headers={"Origin": PAGE},
        timeout=30,
    )
    assert r.status_code == 401


def test_the_preflight_answers_only_the_page(server):
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = requests.options(
        f"{server.url}/library/scan/batch", headers={**ask, "Origin": PAGE}, timeout=30
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    assert ok.headers["Access-Control-Allow-Methods"] == "POST"
    evil = requests.options(
        f"{server.url}/library/scan/batch",
        headers={**ask, "Origin": "http://evil.example"},
        timeout=30,
    )
    assert evil.status_code == 403 and "SCANBATCH_PAGE_ORIGINS" in evil.json()["message"]
    assert "Access-Control-Allow-Origin" not in evil.headers
    # No other route answers another origin, not even the page's.
    r = requests.get(f"{server.url}/healthz", headers={"Origin": PAGE}, timeout=30)
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_bad_page_origins_setting_names_itself(clean_env, monkeypatch):
    from scanbatch.errors import ConfigError
    from scanbatch.settings import load_settings

    monkeypatch.setenv("SCANBATCH_PAGE_ORIGINS", "http://127.0.0.1:8866/workbench")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.message.startswith("SCANBATCH_PAGE_ORIGINS: 'http://127.0.0.1:8866/workbench'")
    assert "without a path" in exc.value.message and "Value error" not in exc.value.message
