"""End to end against a real server on 127.0.0.1: each job runs the real processing notebook
through papermill in a real kernel."""

import json
import os
import subprocess
import time

import pytest
import requests

from scanbatch.store import JobStore
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import FINISHED, ROOT, ServerProcess, bearer, keys
from tests.procs import alive, children, descendants, wait_gone

pytestmark = pytest.mark.slow


def submit(server, token, scripts, fmt="JPEG", headers=None, per_item=1, records=None):
    records = records or [(f"Artist {i}", f"Title {i}") for i in range(len(scripts))]
    items = [
        {
            "imageCount": per_item,
            "photoTypes": ["front", "back", "photo"][:per_item],
            "context": {"artistName": artist, "albumTitle": title, "stickerText": s},
        }
        for s, (artist, title) in zip(scripts, records, strict=True)
    ]
    files = [
        ("images", (f"p{i}", image_bytes(fmt), "application/octet-stream"))
        for i in range(len(items) * per_item)
    ]
    return requests.post(
        f"{server.url}/library/scan/batch",
        data={"manifest": json.dumps(items)},
        files=files,
        headers={**bearer(token), **(headers or {})},
        timeout=30,
    )


def test_happy_path_partial_failure_and_notebook(live_server, server_tokens):
    # Item 2 is an album of the seeded sample catalog, so it matches.
    records = [("Artist 0", "Title 0"), ("Artist 1", "Title 1"), ("Mia Hall", "Red Valley")]
    records.append(("Artist 3", "Title 3"))
    r = submit(
        live_server,
        server_tokens["director"],
        ["", "fail", "", "crash"],
        "HEIF",
        per_item=2,
        records=records,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    job = live_server.wait_finished(job_id, server_tokens["director"])
    assert job["status"] == "completed"
    assert (job["totalItems"], job["completedItems"], job["failedItems"]) == (4, 2, 2)
    results = job["results"]
    assert [x["itemIndex"] for x in results] == [0, 1, 2, 3]
    assert [x["status"] for x in results] == ["completed", "failed", "completed", "failed"]
    assert results[0]["extraction"]["artistName"] == {"value": "Artist 0", "confidence": 0.9}
    assert results[1]["errorMessage"] == "the fake model refused"
    assert results[3]["errorMessage"] == "RuntimeError: fake crash"
    html = requests.get(
        f"{live_server.url}/library/scan/batch/{job_id}/notebook",
        headers=bearer(server_tokens["director"]),
        timeout=60,
    )
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    page = html.text
    # The audit trail, for a person: each item in item order with thumbnails of its photos,
    # what was sent (HEIC photos), what came back, the match with its album and library code,
    # and errors in words; then a summary.
    positions = [page.index(f"Item {i}: ") for i in range(4)]
    assert positions == sorted(positions)
    assert page.count("data:image/jpeg;base64,") >= 8  # a thumbnail per photo
    assert "image/heic" in page and "the fake model refused" in page
    assert "Trying again will not help." in page and "RuntimeError: fake crash" in page
    item2 = page[positions[2] : positions[3]]
    assert "Mia Hall" in item2 and "Red Valley" in item2 and "HAL 1/1" in item2
    assert "1003" in item2 and "score" in item2
    assert "Summary" in page
    assert results[2]["matchedAlbumId"] == 1003


def test_all_items_failing_fails_the_job(live_server, server_tokens):
    job_id = submit(live_server, server_tokens["director"], ["fail", "fail"]).json()["jobId"]
    job = live_server.wait_finished(job_id, server_tokens["director"])
    assert job["status"] == "failed" and job["failedItems"] == 2


def test_items_complete_one_by_one(live_server, server_tokens):
    r = submit(live_server, server_tokens["director"], ["sleep:0.5", "sleep:2.5"])
    seen = live_server.poll(
        r.json()["jobId"], server_tokens["director"], lambda b: b["status"] in FINISHED
    )
    states = {tuple(x["status"] for x in body["results"]) for body in seen}
    assert ("completed", "processing") in states  # GET showed the first item before the second


def test_cancel_a_running_job(live_server, server_tokens):
    job_id = submit(live_server, server_tokens["director"], ["", "sleep:30"]).json()["jobId"]
    live_server.poll(
        job_id, server_tokens["director"], lambda b: b["results"][0]["status"] == "completed"
    )
    r = requests.post(
        f"{live_server.url}/library/scan/batch/{job_id}/cancel",
        headers=bearer(server_tokens["manager"]),
        timeout=60,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "completed"
    assert [x["status"] for x in body["results"]] == ["completed", "failed"]
    assert body["results"][1]["errorMessage"] == "cancelled"


def test_kill_9_mid_job_then_restart_completes_every_item_once(tmp_path):
    data_dir = tmp_path / "data"
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    token = keys(store)["director"]
    store.close()
    first = ServerProcess(data_dir).start()
    scripts = ["", "", "sleep:60", "sleep:60"]
    job_id = submit(first, token, scripts).json()["jobId"]
    results = data_dir / "jobs" / job_id / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not results.exists() or len(results.read_text().splitlines()) < 2
    ):
        time.sleep(0.1)
    orphan_pid = int((data_dir / "jobs" / job_id / "papermill.pid").read_text())
    first.kill()
    done_before = [json.loads(x)["itemIndex"] for x in results.read_text().splitlines()]
    assert sorted(done_before) == [0, 1]
    # Resume with the slow items now quick: only the unfinished ones are extracted again.
    manifest_path = data_dir / "jobs" / job_id / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for item in manifest["items"]:
        item["context"]["stickerText"] = ""
    manifest_path.write_text(json.dumps(manifest))
    second = ServerProcess(data_dir).start()
    try:
        job = second.wait_finished(job_id, token)
    finally:
        second.stop()
    assert job["status"] == "completed" and job["completedItems"] == 4
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    by_item = {}
    for line in lines:
        by_item.setdefault(line["itemIndex"], []).append(line)
    # Items 0 and 1 came from the first server's kernel and were not extracted again; the
    # first server's orphaned kernel was stopped, so no item is written twice.
    assert sorted(by_item) == [0, 1, 2, 3]
    assert [len(by_item[i]) for i in range(4)] == [1, 1, 1, 1]
    # Gone, or a zombie: in a container whose init does not reap, a killed orphan stays one.
    assert not alive(orphan_pid)
    assert not (data_dir / "jobs" / job_id / "papermill.pid").exists()


def test_kill_9_before_the_notebook_is_saved_then_restart_completes_it(tmp_path):
    """The crash window: the last result finishes the job (the app has its answer), and the
    notebook is saved after. A server killed in between left a notebook with only its
    parameters; the restarted server runs it again from the job folder, extracting nothing."""
    from scanbatch.jobfolder import JobFolder
    from scanbatch.warm_kernel import PAUSE_BEFORE_SAVE_ENV

    data_dir = tmp_path / "data"
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    token = keys(store)["director"]
    store.close()
    paused = tmp_path / "paused-before-save"
    first = ServerProcess(data_dir, **{PAUSE_BEFORE_SAVE_ENV: str(paused)}).start()
    job_id = submit(first, token, ["", "", "fail"]).json()["jobId"]
    answered = first.wait_finished(job_id, token)
    deadline = time.monotonic() + 60
    while not paused.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert paused.exists(), "the run never reached its save"
    folder = JobFolder.for_job(data_dir / "jobs", job_id)
    results_before = folder.results_path.read_text()
    assert not folder.notebook_saved()  # the window: only the parameterised copy is on disk
    first.kill()
    assert not folder.notebook_saved()

    second = ServerProcess(data_dir).start()
    try:
        deadline = time.monotonic() + 90
        while not folder.notebook_saved() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert folder.notebook_saved(), "the restarted server did not complete the notebook"
        while folder.pid_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        after = second.wait_finished(job_id, token)
        page = requests.get(
            f"{second.url}/library/scan/batch/{job_id}/notebook",
            headers=bearer(token),
            timeout=30,
        )
    finally:
        second.stop()
    assert folder.results_path.read_text() == results_before  # nothing extracted again
    assert [r["status"] for r in after["results"]] == [r["status"] for r in answered["results"]]
    assert after["status"] == answered["status"]
    assert page.status_code == 200
    notebook = json.loads(folder.notebook_path.read_text())
    outputs = [o for cell in notebook["cells"] for o in cell.get("outputs", [])]
    assert outputs, "the completed notebook has no outputs"
    assert not folder.pid_path.exists()


@pytest.mark.parametrize("target", ["process group", "server alone"])
def test_kill_9_of_the_server_ends_its_kernels(tmp_path, target):
    """Kernels run in sessions of their own (so the runner can kill one job's group): a server
    killed with -9, alone or with its group, must still take them with it, or an orphan would
    go on sending photos to Gemini beside the restarted server's run."""
    import signal

    data_dir = tmp_path / "data"
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    token = keys(store)["director"]
    store.close()
    server = ServerProcess(data_dir, new_session=True).start()
    try:
        job_id = submit(server, token, ["", "sleep:60"]).json()["jobId"]
        server.poll(job_id, token, lambda b: b["results"][0]["status"] == "completed")
        tree = descendants(server.proc.pid)
        running = int((data_dir / "jobs" / job_id / "papermill.pid").read_text())
        assert running in tree and children(running)  # the job's process and its kernel
        if target == "process group":
            os.killpg(server.proc.pid, signal.SIGKILL)
        else:
            os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        assert wait_gone(tree) == []  # the warm processes and every kernel
    finally:
        server.stop()
    # The sleeping item was not finished by an orphan.
    lines = (data_dir / "jobs" / job_id / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["itemIndex"] for x in lines] == [0]


def test_signals_that_keep_coming_while_it_stops_do_not_break_the_shutdown(tmp_path):
    """Ctrl-C pressed twice, or a launcher and a `pkill` both signalling: the first signal
    stops the server, the rest are ignored, and the shutdown runs to its end."""
    import signal

    server = ServerProcess(tmp_path / "data").start()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while server.proc.poll() is None and time.monotonic() < deadline:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                server.proc.send_signal(signum)
            except ProcessLookupError:
                break
        time.sleep(0.005)
    # 0, or killed by a signal that came once Python had let go of its handlers: after the
    # shutdown, which is what the log and the data folder show.
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM, -signal.SIGINT)
    server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and log.rstrip().endswith("scanbatch stopped")
    assert not (tmp_path / "data" / "server.json").exists()


def test_first_start_prints_a_key_and_a_curl_example_that_works(tmp_path):
    server = ServerProcess(tmp_path / "data", first_key=True).start()
    try:
        banner = server.banner
        token = banner[banner.index(next(x for x in banner if "first API key" in x)) + 1].strip()
        curl = next(x for x in banner if x.strip().startswith("curl "))
        out = subprocess.run(curl, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
        accepted = json.loads(out.stdout)
        assert accepted["status"] == "pending" and accepted["totalItems"] == 8
        job = server.wait_finished(accepted["jobId"], token)
        assert job["status"] == "completed" and job["completedItems"] == 8
    finally:
        server.stop()
    # A second start finds the key and prints none.
    again = ServerProcess(tmp_path / "data", first_key=True).start()
    again.stop()
    assert not any("first API key" in x for x in again.banner)


def test_a_started_server_answers_with_a_warm_kernel_ready(tmp_path):
    """The first job after a start must not wait for a kernel: the server answers only once
    one is warm."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        health = requests.get(f"{server.url}/healthz", timeout=10).json()
    finally:
        server.stop()
    assert health["status"] == "ok" and health["warmKernels"] >= 1
    assert health["extractor"] == "fake" and health["problem"] is None


def test_a_kernel_that_cannot_start_is_reported_and_fails_jobs_in_words(tmp_path):
    # A python3 kernelspec whose program does not exist, found first through JUPYTER_PATH.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Broken"}))
    data = tmp_path / "data"
    data.mkdir()
    store = JobStore.open(data / "scanbatch.duckdb")
    tokens = keys(store)
    store.close()
    server = ServerProcess(data, JUPYTER_PATH=str(tmp_path / "jupyter")).start()
    try:
        health = requests.get(f"{server.url}/healthz", timeout=10).json()
        r = submit(server, tokens["director"], [""])
        job = server.wait_finished(r.json()["jobId"], tokens["director"])
    finally:
        server.stop()
    assert health["status"] == "failing" and health["warmKernels"] == 0
    assert "kernel did not start" in health["problem"] and "warm_kernels.log" in health["problem"]
    assert job["status"] == "failed"
    assert job["results"][0]["errorMessage"].startswith("Could not start a notebook kernel: ")


def test_demo_processes_the_shipped_sample_and_prints_what_was_read(tmp_path):
    server = ServerProcess(tmp_path / "data", args=("--demo",)).start()
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(lines) < 11:
            line = server.proc.stdout.readline()
            if line.strip():
                lines.append(line.rstrip())
    finally:
        server.stop()
    assert lines[0].startswith("Processing the sample batch")
    assert lines[1].startswith("Sample job ") and lines[1].endswith(": completed")
    assert lines[2].split()[:3] == ["item", "status", "artist"]
    assert [row.split()[1] for row in lines[3:11]] == ["completed"] * 8


def test_gemini_through_the_server_and_the_key_never_reaches_disk(tmp_path):
    from scanbatch.testing.fake_gemini import FakeGemini, extraction_reply

    secret = "AIza-test-SECRET-0123456789"
    data_dir = tmp_path / "data"
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    token = keys(store)["director"]
    store.close()
    with FakeGemini(default=extraction_reply()) as fake:
        server = ServerProcess(
            data_dir,
            extractor="gemini",
            GEMINI_API_KEY=secret,
            SCANBATCH_GEMINI_BASE_URL=fake.base_url,
        ).start()
        try:
            job_id = submit(server, token, ["", ""], fmt="HEIF").json()["jobId"]
            job = server.wait_finished(job_id, token)
        finally:
            server.stop()
        assert job["status"] == "completed" and job["completedItems"] == 2
        assert job["results"][0]["extraction"]["artistName"]["value"]
        assert job["inputTokens"] > 0
        sent = fake.requests[0]
        assert sent.headers.get("x-goog-api-key") == secret  # it went where it belongs
        assert "image/heic" in json.dumps(sent.body)
    leaked = [
        str(path)
        for path in tmp_path.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert leaked == []  # not in the notebook, its logs, results.jsonl, the store or server.log
