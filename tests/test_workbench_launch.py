"""The launcher (`make run`) as a person and a hostile web site meet it: the page's door (a token
per session, its own Host and Origin only) and a quiet stop at any moment. Real processes: the
launcher, its API server and Voilà, on free ports of 127.0.0.1."""

from __future__ import annotations

import re
import signal
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import requests
import websocket

from scanbatch.client import Client
from scanbatch.testing.servers import ROOT, Launcher

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "data" / "sample"
OPEN_THE_PRINTED_ADDRESS = "Open the workbench address printed by `make run`"


def assert_quiet(launcher: Launcher, code: int) -> None:
    """An orderly stop: exit code 0 and nothing in the whole output that looks like a fault."""
    out = launcher.output
    assert code == 0, out
    assert "Traceback" not in out, out
    assert "ERROR" not in out, out
    assert "scanbatch and the workbench stopped." in out, out


@pytest.fixture
def launcher(tmp_path):
    started: list[Launcher] = []

    def start(*args: str) -> Launcher:
        started.append(Launcher(ROOT, *args, SCANBATCH_DATA_DIR=str(tmp_path / "data")).start())
        return started[-1]

    yield start
    for one in started:
        if one.proc is not None and one.proc.poll() is None:
            one.stop()


def test_the_page_answers_only_with_its_token_at_its_own_address(launcher, tmp_path):
    session = launcher("--no-demo")
    page, token = session.banner["page"], session.banner["page_token"]
    base = page.split("?", 1)[0]
    port = urlsplit(base).port
    assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=[\w-]{{40,}}", page), page

    # Bound to loopback only.
    (voila,) = [
        c for c in psutil.Process(session.proc.pid).children() if "voila" in " ".join(c.cmdline())
    ]
    listening = {c.laddr for c in voila.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", port)}, listening

    # Without the token, or with a wrong one: 403 and what to open instead.
    for url in (base, f"{base}?token=wrong", f"{base}?token="):
        refused = requests.get(url, timeout=60)
        assert refused.status_code == 403, url
        assert OPEN_THE_PRINTED_ADDRESS in refused.text
        assert "?token=" in refused.text
    opened = requests.get(page, timeout=120)
    assert opened.status_code == 200
    assert "scanbatch workbench" in opened.text
    (kernel,) = re.findall(r'"kernelId": "([0-9a-f-]{36})"', opened.text)

    # DNS rebinding: the page under another name is refused, token or not.
    for host in (f"evil.example:{port}", f"127.0.0.2:{port}", f"localhost:{port + 1}"):
        wrong = requests.get(page, headers={"Host": host}, timeout=60)
        assert wrong.status_code == 403, host
    assert requests.get(page, headers={"Host": f"localhost:{port}"}, timeout=60).ok
    wrong = requests.get(page, headers={"Host": f"127.0.0.2:{port}"}, timeout=60)
    assert f"http://127.0.0.1:{port}/" in wrong.text

    # The kernel's API and its websocket from another site: refused, even with the token; the
    # same requests from the page itself go through.
    api = f"{base}api/kernels/{kernel}?token={token}"
    foreign = requests.get(api, headers={"Origin": "http://evil.example"}, timeout=30)
    assert foreign.status_code == 403
    assert "another site is refused" in foreign.json()["message"]
    assert requests.get(api, headers={"Origin": base.rstrip("/")}, timeout=30).ok
    channels = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused_ws:
        websocket.create_connection(channels, origin="http://evil.example", timeout=30)
    assert refused_ws.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as no_token_ws:
        websocket.create_connection(channels.split("?")[0], origin=base.rstrip("/"), timeout=30)
    assert no_token_ws.value.status_code == 403
    own = websocket.create_connection(
        f"{channels}&session_id={uuid.uuid4().hex}", origin=base.rstrip("/"), timeout=30
    )
    own.close()

    # The token was printed once, in the banner, and went into no log or file.
    assert_quiet(session, session.stop())
    assert session.output.count(token) == 1, session.output
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_stopping_right_after_start_is_quiet(launcher):
    session = launcher()  # with the demo job, as `make run`
    assert_quiet(session, session.stop(signal.SIGTERM))


def test_stopping_during_a_job_is_quiet(launcher):
    session = launcher("--no-demo")
    client = Client(session.banner["api"], session.banner["token"])
    photo = SAMPLE / "item04_0_front_cover.jpg"
    job = client.submit(
        [photo, photo],
        {
            "items": [
                {
                    "imageCount": 1,
                    "photoTypes": ["front_cover"],
                    "context": {"stickerText": "sleep:120"},
                }
            ]
            * 2
        },
    )
    deadline = time.monotonic() + 120
    while client.job(job).status.value != "processing":
        assert time.monotonic() < deadline, session.output
        time.sleep(0.1)
    assert_quiet(session, session.stop())


def test_stopping_right_after_a_job_is_quiet(launcher):
    """The demo job ends, the pool is warming its next kernel from the store, and the stop
    closes that store: stopping then was `ERROR scanbatch.runner: could not work out warm-up
    parameters` and a traceback."""
    session = launcher()
    session.wait_for("Sample job ", timeout=240)
    assert_quiet(session, session.stop(signal.SIGTERM))
