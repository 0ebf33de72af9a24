"""The probes of issue 18, run against what `make run` starts: the launcher from a copy of the
work tree, its working directory the repository root, no SCANBATCH_DATA_DIR (the relative
`data`), the demo job. Each probe is one row of the issue's table, asked as the newcomer or the
attacker asked it; the rows that need a set-up of their own (stalled exports, a review racing a
delete, datasets of 500 records, unpacking) have their own tests beside the code they test."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests

from scanbatch import server_file
from scanbatch.testing.servers import ROOT, Launcher, bearer, copy_work_tree
from tests.test_key_revocation import served_after_a_revoke

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = copy_work_tree(tmp_path_factory.mktemp("clone"))
    launcher = Launcher(root).start()
    launcher.wait_for("Sample job ", timeout=180)  # the demo job has finished
    yield launcher
    launcher.stop()


def api(run) -> str:
    return run.banner["api"]


def director(run) -> dict[str, str]:
    return bearer(run.banner["token"])


def queue(run) -> list[dict]:
    r = requests.get(
        f"{api(run)}/library/scan/review/items?state=all&limit=100",
        headers=director(run),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_every_photo_and_thumbnail_answers_under_the_relative_data_folder(run):
    assert (run.root / "data" / "scanbatch.duckdb").is_file()  # the relative `data`, resolved
    items = queue(run)
    assert len(items) == 8  # the shipped sample
    for item in items:
        for photo in item["photos"]:
            for suffix in ("", "?size=160", "?size=1200"):
                r = requests.get(
                    api(run) + photo["url"] + suffix, headers=director(run), timeout=30
                )
                assert r.status_code == 200, (api(run) + photo["url"] + suffix, r.text[:200])
                assert "private" in r.headers["Cache-Control"].split(", ")
                assert r.content[:2] == b"\xff\xd8" or suffix == ""


def test_thumbnails_come_in_a_few_sizes_whatever_is_asked(run):
    photo = queue(run)[0]["photos"][0]
    for size in range(16, 4096, 81):  # 51 different sizes
        r = requests.get(f"{api(run)}{photo['url']}?size={size}", headers=director(run), timeout=30)
        assert r.status_code == 200
    job_id = queue(run)[0]["jobId"]
    thumbnails = list((run.root / "data" / "jobs" / job_id / "thumbnails").iterdir())
    assert len({p.name.rsplit("_", 1)[-1] for p in thumbnails}) <= 5, thumbnails


def test_the_page_has_a_door(run):
    page = run.banner["page"]
    assert "?token=" in page
    bare = page.split("?")[0]
    r = requests.get(bare, timeout=30)
    assert r.status_code == 403 and "printed by `make run`" in r.text
    assert requests.get(page, timeout=60).status_code == 200
    port = urlsplit(page).port
    evil = requests.get(page, headers={"Host": f"evil.example:{port}"}, timeout=30)
    assert evil.status_code == 403


def test_an_unauthenticated_200_mib_upload_is_refused_from_its_headers(run):
    host, port = urlsplit(api(run)).hostname, urlsplit(api(run)).port
    head = (
        "POST /library/scan/batch HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(head)
        sent = time.perf_counter()
        answer = s.recv(65536)
        latency = time.perf_counter() - sent
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert latency < 0.1, latency


def test_numbers_in_other_scripts_and_too_long_are_400s(run):
    item = queue(run)[0]
    base = f"{api(run)}/library/scan/batch/{item['jobId']}/items"
    for path in ("²/photos/0", "0/photos/²", "0/photos/" + "9" * 400):
        r = requests.get(f"{base}/{path}", headers=director(run), timeout=30)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["message"]
    r = requests.get(
        f"{api(run)}/library/scan/catalog/search?q=²", headers=director(run), timeout=30
    )
    assert r.status_code in (200, 400), r.text  # words to search for, never a 500
    r = requests.get(f"{api(run)}/library/scan/batch?limit=١٢", headers=director(run), timeout=30)
    assert r.status_code == 400 and "limit" in r.json()["message"]


def test_a_big_json_body_is_refused_naming_its_limit(run):
    item = queue(run)[0]
    url = f"{api(run)}/library/scan/batch/{item['jobId']}/items/{item['itemIndex']}/review"
    body = json.dumps({"note": "x" * (2 * 1024 * 1024)})
    r = requests.put(
        url,
        data=body,
        headers={**director(run), "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413 and "JSON body" in r.json()["message"]


def test_a_revoked_key_stops_at_once_for_its_concurrent_users(run):
    local = server_file.read(run.root / "data")  # the server's own stationManager key
    assert local is not None
    assert served_after_a_revoke(api(run), bearer(local.token)) == []


def test_the_notebook_page_loads_nothing_from_another_site(run):
    job_id = queue(run)[0]["jobId"]
    r = requests.get(
        f"{api(run)}/library/scan/batch/{job_id}/notebook", headers=director(run), timeout=60
    )
    assert r.status_code == 200
    assert "script-src" in r.headers["Content-Security-Policy"] or (
        "default-src 'none'" in r.headers["Content-Security-Policy"]
    )
    assert not re.search(r"<script[^>]+src=", r.text)
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)[^\s\"'<>]*\.(js|css)", r.text)


def test_the_data_folder_is_private(run):
    """Everything the server and its kernels wrote there; the files the repository ships in
    data/ (the sample, the prompts, the sample catalog) are behind the folder's own 0700."""
    data = run.root / "data"
    tracked = subprocess.run(
        ["git", "ls-files", "data"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    shipped = {run.root / name for name in tracked}
    shipped |= {p for f in shipped for p in f.parents if p != data and p.is_relative_to(data)}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    loose = [
        f"{p.relative_to(data)} {oct(stat.S_IMODE(p.stat().st_mode))}"
        for p in data.rglob("*")
        if p not in shipped and stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert (data / "jobs").is_dir() and loose == []


def test_zz_stopping_is_quiet(run):
    """Last in this module: it stops the launcher (the fixture's stop then does nothing)."""
    assert run.stop() == 0
    assert "Traceback" not in run.output and "ERROR" not in run.output, run.output
