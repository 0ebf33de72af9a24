"""Completion webhooks end to end: real servers in subprocesses POST to a real receiver on
127.0.0.1, which checks every signature with the `standardwebhooks` package and by the spec's
own formula; the store's side on a real DuckDB file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from standardwebhooks import Webhook

from scanbatch.errors import ConfigError
from scanbatch.jobfolder import EXECUTED_NOTEBOOK
from scanbatch.models import ItemOutcome, Manifest, Status
from scanbatch.settings import Settings, load_settings
from scanbatch.store import JobStore
from scanbatch.store.webhooks import Callback
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ServerProcess, bearer, keys
from scanbatch.testing.webhook_receiver import Receiver
from scanbatch.webhooks import SCHEDULE, next_attempt, retry_after_seconds

pytestmark = pytest.mark.slow

# Made for this run: no secret is ever written into the repository.
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
WINDOW = 3.0  # seconds a delivery is retried on the shared server
TIMEOUT = 2.0  # seconds an attempt may take there
# The schedule a thousand times faster: 0, 5 ms, 0.3 s, 1.8 s, 7.2 s, ...
SCALE = 0.001


def verified(call) -> dict:
    """The body of a received webhook, its signature checked twice: by the standardwebhooks
    package, and by the spec's formula computed here (base64 HMAC-SHA256 of id.timestamp.body
    with the secret's decoded bytes)."""
    _at, headers, body = call
    payload = Webhook(SECRET).verify(body, headers)
    lower = {k.lower(): v for k, v in headers.items()}
    signed = f"{lower['webhook-id']}.{lower['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in lower["webhook-signature"].split(" ")
    assert lower["content-type"] == "application/json"
    return payload


def webhook_id(call) -> str:
    return {k.lower(): v for k, v in call[1].items()}["webhook-id"]


def post(server, token, scripts, callback_url=None, **fields):
    items = [
        {"imageCount": 1, "photoTypes": ["front"], "context": {"stickerText": s}} for s in scripts
    ]
    data = {"manifest": json.dumps(items), **fields}
    if callback_url is not None:
        data["callbackUrl"] = callback_url
    files = [("images", (f"p{i}.jpg", image_bytes(), "image/jpeg")) for i in range(len(items))]
    return requests.post(
        f"{server.url}/library/scan/batch",
        data=data,
        files=files,
        headers=bearer(token),
        timeout=30,
    )


def deliveries(server, token, job_id) -> requests.Response:
    return requests.get(
        f"{server.url}/library/scan/batch/{job_id}/webhooks", headers=bearer(token), timeout=10
    )


def wait_for_state(server, token, job_id, state, timeout=30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = deliveries(server, token, job_id).json()["deliveries"]
        if found and found[0]["state"] == state:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: no {state} delivery in {timeout} s: {found}")


def server_env(receiver, **env):
    return {
        "SCANBATCH_WEBHOOK_HOSTS": receiver.host,
        "SCANBATCH_WEBHOOK_SECRET": SECRET,
        "SCANBATCH_WEBHOOK_RETRY_SCALE": str(SCALE),
        "SCANBATCH_WEBHOOK_TIMEOUT": "5",
        **env,
    }


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def closed_host():
    """An allowed host:port where nothing listens (its connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def hook_server(server_data_dir, server_tokens, receiver, closed_host):
    env = server_env(
        receiver,
        SCANBATCH_WEBHOOK_RETRY_SECONDS=str(WINDOW),
        SCANBATCH_WEBHOOK_TIMEOUT=str(TIMEOUT),
    )
    env["SCANBATCH_WEBHOOK_HOSTS"] += f",{closed_host}"
    srv = ServerProcess(server_data_dir, **env).start()
    yield srv
    receiver.release.set()
    srv.stop()
    # The secret was in the server's environment only: never in what it printed or logged.
    log = (server_data_dir.parent / "server.log").read_text(errors="replace")
    assert SECRET not in log and SECRET not in "\n".join(srv.banner)
    notebooks = list((server_data_dir / "jobs").glob(f"*/{EXECUTED_NOTEBOOK}"))
    assert notebooks and not any(SECRET in p.read_text() for p in notebooks)


def test_a_receiver_failing_twice_then_accepting_gets_one_signed_body_under_one_id(
    hook_server, server_tokens, receiver
):
    token = server_tokens["director"]
    url = receiver.url("/flaky", (500, {}), (503, {"Retry-After": "1"}), (200, {}))
    r = post(hook_server, token, ["", "fail"], url)
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    calls = receiver.wait("/flaky", 3)
    job = hook_server.wait_finished(job_id, token)
    payloads = [verified(c) for c in calls]
    assert payloads[0] == {
        "type": "scan.job.completed",
        "jobId": job_id,
        "status": "completed",
        "totalItems": 2,
        "completedItems": 1,
        "failedItems": 1,
        "url": f"{hook_server.url}/library/scan/batch/{job_id}",
    }
    assert payloads == [payloads[0]] * 3 and job["status"] == "completed"
    assert requests.get(payloads[0]["url"], headers=bearer(token), timeout=10).status_code == 200
    # One id for every attempt: how a receiver deduplicates.
    assert len({webhook_id(c) for c in calls}) == 1
    # The third waited for Retry-After (1 s), not the schedule's 0.3 s.
    assert calls[2][0] - calls[1][0] >= 1.0
    delivery = wait_for_state(hook_server, token, job_id, "delivered")
    assert delivery["id"] == webhook_id(calls[0]) and delivery["url"] == url
    assert delivery["eventType"] == "scan.job.completed" and delivery["payload"] == payloads[0]
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    assert [a["statusCode"] for a in delivery["attempts"]] == [500, 503, 200]
    assert [a["error"] for a in delivery["attempts"]] == ["HTTP 500", "HTTP 503", None]
    assert all(a["durationMs"] >= 0 for a in delivery["attempts"])
    assert delivery["lastError"] is None and delivery["finishedAt"] is not None
    time.sleep(0.5)
    assert len(receiver.seen["/flaky"]) == 3  # nothing after the 2xx


def test_a_receiver_that_never_accepts_is_marked_failed_after_the_window(
    hook_server, server_tokens, receiver
):
    token = server_tokens["director"]
    url = receiver.url("/never", (500, {}))
    job_id = post(hook_server, token, ["fail"], url).json()["jobId"]
    delivery = wait_for_state(hook_server, token, job_id, "failed", timeout=WINDOW + 20)
    calls = receiver.seen["/never"]
    assert verified(calls[0])["type"] == "scan.job.failed"
    assert verified(calls[-1])["status"] == "failed"
    assert len(calls) == len(delivery["attempts"]) >= 3
    assert delivery["lastError"] == "HTTP 500"
    # The last attempt was made at the window's end, and none after it.
    due = datetime.fromisoformat(delivery["dueAt"])
    last = datetime.fromisoformat(delivery["attempts"][-1]["attemptedAt"])
    assert last - due >= timedelta(seconds=WINDOW)
    time.sleep(0.5)
    assert len(receiver.seen["/never"]) == len(calls)


def test_a_refused_connection_is_retried_with_its_error(hook_server, server_tokens, closed_host):
    token = server_tokens["director"]
    job_id = post(hook_server, token, [""], f"http://{closed_host}/x").json()["jobId"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (delivery,) = deliveries(hook_server, token, job_id).json()["deliveries"]
        if len(delivery["attempts"]) >= 2:
            break
        time.sleep(0.1)
    first = delivery["attempts"][0]
    assert first["statusCode"] is None and first["error"].startswith("connection failed")
    assert "refused" in first["error"].lower()


def test_a_stalled_receiver_times_out_and_holds_up_no_other(hook_server, server_tokens, receiver):
    token = server_tokens["director"]
    receiver.stalls.add("/stall")
    stalled = post(hook_server, token, [""], receiver.url("/stall", (200, {}))).json()["jobId"]
    (first, *_) = receiver.wait("/stall", 1)
    quick = post(hook_server, token, [""], receiver.url("/quick", (200, {}))).json()["jobId"]
    (answered,) = receiver.wait("/quick", 1)
    assert answered[0] - first[0] < TIMEOUT  # sent while the other attempt still hung
    wait_for_state(hook_server, token, quick, "delivered")
    delivery = wait_for_state(hook_server, token, stalled, "delivered")
    assert [a["statusCode"] for a in delivery["attempts"]] == [None, 200]
    error = delivery["attempts"][0]["error"]
    assert error == f"no answer within {TIMEOUT:g} s (SCANBATCH_WEBHOOK_TIMEOUT)"
    assert delivery["attempts"][0]["durationMs"] >= TIMEOUT * 1000


def test_a_redirect_is_not_followed(hook_server, server_tokens, receiver):
    token = server_tokens["director"]
    url = receiver.url("/moved", (302, {"Location": "http://example.org/"}), (204, {}))
    job_id = post(hook_server, token, [""], url).json()["jobId"]
    delivery = wait_for_state(hook_server, token, job_id, "delivered")
    assert [a["statusCode"] for a in delivery["attempts"]] == [302, 204]
    assert "redirect" in delivery["attempts"][0]["error"]


def test_the_deliveries_route(hook_server, server_tokens, receiver):
    owner = server_tokens["director"]
    url = receiver.url("/route", (200, {}))
    with_hook = post(hook_server, owner, [""], url).json()["jobId"]
    without = post(hook_server, owner, [""]).json()["jobId"]
    hook_server.wait_finished(without, owner)
    assert deliveries(hook_server, owner, without).json() == {"deliveries": []}
    wait_for_state(hook_server, owner, with_hook, "delivered")
    # A stationManager sees any job's; another user, even a reader, gets the job's 404.
    assert deliveries(hook_server, server_tokens["manager"], with_hook).json()["deliveries"]
    for other in ("other", "dj"):
        r = deliveries(hook_server, server_tokens[other], with_hook)
        assert r.status_code == 404 and r.json()["message"] == "Job not found"
    assert deliveries(hook_server, owner, "not-a-uuid").status_code == 400
    assert deliveries(hook_server, "sb_nope", with_hook).status_code == 401


@pytest.mark.parametrize(
    ("callback", "says"),
    [
        ("ftp://{host}/x", "absolute http:// or https:// URL"),
        ("/relative/path", "absolute http:// or https:// URL"),
        ("http://", "absolute http:// or https:// URL"),
        ("http://{host}/a b", "absolute http:// or https:// URL"),
        ("http://{host}:99999/x", "absolute http:// or https:// URL"),
        ("http://127.0.0.1:1/x", "SCANBATCH_WEBHOOK_HOSTS"),
        ("https://hooks.example.org/x", "SCANBATCH_WEBHOOK_HOSTS"),
        ("http://user:pw@{host}/x", "user name or password"),
        ("http://{host}/" + "a" * 2000, "at most 2,000"),
    ],
)
def test_a_bad_callback_url_is_a_400_naming_the_field(
    hook_server, server_tokens, receiver, callback, says
):
    r = post(hook_server, server_tokens["director"], [""], callback.format(host=receiver.host))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == 400 and "callbackUrl" in body["message"]
    assert says in body["message"]


def test_a_restart_between_attempts_still_delivers_exactly_once(tmp_path, receiver):
    data_dir = tmp_path / "data"
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    token = keys(store)["director"]
    store.close()
    env = server_env(receiver)
    url = receiver.url("/restart", (503, {"Retry-After": "2"}), (200, {}))
    first = ServerProcess(data_dir, **env).start()
    try:
        job_id = post(first, token, [""], url).json()["jobId"]
        receiver.wait("/restart", 1)
    finally:
        first.stop()  # SIGTERM
    # Stopped between the attempts: the delivery waits in the store for the next server.
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    try:
        (stored,) = store.webhooks.for_job(job_id).deliveries
    finally:
        store.close()
    assert stored.state == "due" and [a.status_code for a in stored.attempts] == [503]
    second = ServerProcess(data_dir, **env).start()
    try:
        delivery = wait_for_state(second, token, job_id, "delivered")
        calls = receiver.wait("/restart", 2)
        time.sleep(0.5)
    finally:
        second.stop()
    assert len(receiver.seen["/restart"]) == 2  # one 503, then exactly one 2xx
    assert [verified(c)["jobId"] for c in calls] == [job_id, job_id]
    assert webhook_id(calls[0]) == webhook_id(calls[1]) == delivery["id"]
    assert [a["statusCode"] for a in delivery["attempts"]] == [503, 200]
    assert calls[1][0] - calls[0][0] >= 2.0  # Retry-After held across the restart


# -- in process: the settings, the secret, the schedule and the store ------------------------


@pytest.fixture
def hook_app(tmp_path, monkeypatch):
    from scanbatch.web import create_app, prepare, shutdown
    from tests.webutil import ResponseChecker

    monkeypatch.delenv("SCANBATCH_EXTRACTOR", raising=False)
    settings = Settings(data_dir=tmp_path / "data", extractor="fake", webhook_hosts="h.example")
    app = create_app(settings)
    prepare(app)
    checker = ResponseChecker(app)
    yield app
    shutdown(app)
    checker.assert_clean()


@pytest.mark.parametrize("secret", [None, "", "no-prefix", "whsec_!!!", "whsec_c2hvcnQ="])
def test_without_a_valid_secret_a_callback_is_refused(hook_app, monkeypatch, secret):
    from scanbatch.web.services import services_of

    if secret is None:
        monkeypatch.delenv("SCANBATCH_WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("SCANBATCH_WEBHOOK_SECRET", secret)
    token = keys(services_of(hook_app).store)["director"]
    manifest = [{"imageCount": 1, "photoTypes": ["front"]}]
    r = hook_app.test_client().post(
        "/library/scan/batch",
        data={
            "manifest": json.dumps(manifest),
            "callbackUrl": "https://h.example/done",
            "images": [(io.BytesIO(image_bytes()), "p.jpg")],
        },
        headers=bearer(token),
    )
    assert r.status_code == 400, r.get_json()
    message = r.get_json()["message"]
    assert "callbackUrl" in message and "SCANBATCH_WEBHOOK_SECRET" in message
    assert not secret or secret not in message  # never what it holds


def test_bad_webhook_settings_name_the_variable(monkeypatch):
    for name, value in [
        ("SCANBATCH_WEBHOOK_HOSTS", "https://hooks.example.org"),
        ("SCANBATCH_WEBHOOK_HOSTS", "hooks.example.org/path"),
        ("SCANBATCH_WEBHOOK_RETRY_SCALE", "0"),
        ("SCANBATCH_WEBHOOK_TIMEOUT", "-1"),
        ("SCANBATCH_WEBHOOK_RETRY_SECONDS", "soon"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name):
            load_settings()
        monkeypatch.delenv(name)
    monkeypatch.setenv("SCANBATCH_WEBHOOK_HOSTS", " Hooks.Example.org , 127.0.0.1:8123,[::1]:80")
    assert load_settings().allowed_webhook_hosts == {
        "hooks.example.org",
        "127.0.0.1:8123",
        "[::1]:80",
    }


def test_the_retry_schedule_is_standard_webhooks_within_the_window():
    settings = Settings(webhook_retry_seconds=86400, webhook_retry_scale=1)
    due = datetime(2026, 1, 1, tzinfo=UTC)
    now, times = due, []
    for made in range(1, 20):
        now = next_attempt(made, due, now, None, settings)
        if now is None:
            break
        times.append(now - due)
    # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h after each failure; the 10 h past the window is cut
    # to its end (24 h), and a failure there is final.
    assert [t.total_seconds() for t in times] == [
        5,
        305,
        2105,
        9305,
        27305,
        63305,
        86400,
    ]
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    # Retry-After later than the schedule wins, but never past the window.
    assert next_attempt(1, due, due, 60, settings) == due + timedelta(seconds=60)
    assert next_attempt(1, due, due, 10**9, settings) == due + timedelta(days=1)
    scaled = Settings(webhook_retry_scale=0.001)
    assert next_attempt(2, due, due, None, scaled) == due + timedelta(seconds=0.3)


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(format_datetime(now + timedelta(minutes=2), usegmt=True), now) == 120
    assert retry_after_seconds(format_datetime(now - timedelta(minutes=2), usegmt=True), now) == 0
    for unreadable in (None, "", "soon", "²", "-5"):
        assert retry_after_seconds(unreadable, now) is None


def test_a_delivery_is_written_with_its_job_and_made_due_as_it_ends(tmp_path):
    path = tmp_path / "s.duckdb"
    store = JobStore.open(path)
    manifest = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}] * 2})
    callback = Callback("https://h.example/done", "http://api.example/library/scan/batch/")
    job_id = store.create_job("alice", manifest, callback=callback)
    plain = store.create_job("alice", manifest)
    (waiting,) = store.webhooks.for_job(job_id).deliveries
    assert waiting.state == "waiting" and waiting.payload is None
    assert store.webhooks.for_job(plain).deliveries == []
    now = datetime.now(UTC)
    store.record_outcomes(job_id, [ItemOutcome(item_index=0, status="completed", finished_at=now)])
    assert store.webhooks.due(datetime.now(UTC), set(), 10) == []  # one item is still open
    store.webhooks.due_event.clear()
    store.finish_job(job_id)  # the open item fails: the job ends, completed
    assert store.webhooks.due_event.is_set()
    store.close()
    # What the commit holds, in a store opened again (a crash right after it loses nothing).
    store = JobStore.open(path)
    try:
        (due,) = store.webhooks.due(datetime.now(UTC), set(), 10)
        assert due.job_id == job_id and due.attempts == 0
        assert json.loads(due.payload) == {
            "type": "scan.job.completed",
            "jobId": job_id,
            "status": Status.COMPLETED,
            "totalItems": 2,
            "completedItems": 1,
            "failedItems": 1,
            "url": f"http://api.example/library/scan/batch/{job_id}",
        }
        store.finish_job(job_id)  # again: the body stays as it was made
        assert store.webhooks.due(datetime.now(UTC), set(), 10) == [due]
        store.delete_job(job_id)
        cur = store.db.cursor()
        assert cur.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
    finally:
        store.close()
