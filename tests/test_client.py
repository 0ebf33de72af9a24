"""The Python client against a real server on 127.0.0.1 (real notebook runs, fake extractor):
the auditing story end to end, as two music directors and a dj would live it."""

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from scanbatch.client import ApiError, Client
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ROOT

pytestmark = pytest.mark.slow


def manifest(*contexts):
    return [{"imageCount": 1, "photoTypes": ["front_cover"], "context": c} for c in contexts]


def test_two_directors_review_measure_export_and_score(live_server, server_tokens, tmp_path):
    alice = Client(live_server.url, server_tokens["director"])
    bob = Client(live_server.url, server_tokens["other"])
    photo = tmp_path / "IMG_0001.HEIC"
    photo.write_bytes(image_bytes("HEIF", size=(300, 200)))
    seen = []
    job_a = alice.submit(
        [photo, image_bytes("PNG"), ("c.jpg", image_bytes())],
        manifest(
            {"artistName": "Can", "albumTitle": "Tago Mago"},  # confidence 0.8 (the title)
            {"artistName": "Neu!"},  # confidence 0.9
            {"stickerText": "fail"},  # failed: nothing read, first in the queue
        ),
    )
    done = alice.wait(job_a, on_progress=seen.append)
    assert done.status == "completed" and done.completed_items == 2 and done.failed_items == 1
    counts = [v.completed_items + v.failed_items for v in seen]
    assert counts == sorted(counts) and counts[-1] == 3
    job_b = bob.submit([image_bytes()], manifest({"artistName": "Faust"}))
    bob.wait(job_b)

    # Bob audits Alice's items, least confident first.
    queue = bob.review_items(user_id="alice")
    assert [(i.item_index, i.confidence) for i in queue.items] == [(2, None), (0, 0.8), (1, 0.9)]
    assert queue.items[0].status == "failed" and queue.items[0].error_message
    assert bob.review_items().total == 4  # everyone's unreviewed items
    first = queue.items[1]
    assert first.photos[0].mime_type == "image/heic"
    thumb = bob.photo(job_a, 0, 0, size=64)
    assert thumb[:3] == b"\xff\xd8\xff"  # a JPEG made from the HEIC

    truth = {
        "artistName": "Can",
        "albumTitle": "Tago Mago",
        "labelName": None,
        "catalogNumber": None,
        "reviewText": None,
        "upc": None,
    }
    bob.save_review(job_a, 1, {**truth, "artistName": "Neu!", "albumTitle": None}, None)
    before = bob.metrics()["groups"][0]["fields"]["albumTitle"]
    saved = bob.save_review(job_a, 0, {**truth, "albumTitle": "Tago Mago (Remaster)"}, None)
    assert saved.verdicts["albumTitle"] == "corrected" and saved.reviewer == "bob"
    metrics = bob.metrics()
    after = metrics["groups"][0]["fields"]["albumTitle"]
    assert (before["n"], before["accuracy"]) == (0, None)
    assert (after["n"], after["accuracy"]) == (1, 0.0)
    frame = bob.metrics_frame(group_by="extractor")
    assert set(frame["group"]) == {"fake"} and len(frame) == 6
    assert frame.set_index("field").loc["artistName", "accuracy"] == 1.0

    # The golden set, exported through the client, scores exactly as the metrics route did.
    folder = bob.export_dataset(tmp_path / "golden")
    truth_items = json.loads((folder / "truth.json").read_text())["items"]
    assert [t["source"]["itemIndex"] for t in truth_items] == [1, 0]
    for t in truth_items:
        assert all((folder / name).is_file() for name in t["photos"])
    out = tmp_path / "eval.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scanbatch.cli",
            "eval",
            str(folder / "truth.json"),
            str(folder / "results.jsonl"),
            "--json",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    scored = json.loads(out.read_text())
    del scored["details"]
    (group,) = metrics["groups"]
    # The route adds estimates over every record beside eval's figures; eval's are the same.
    assert same_keys(group, scored) == scored

    # A job with reviews is not deleted by accident.
    with pytest.raises(ApiError) as refused:
        alice.delete(job_a)
    assert refused.value.status == 409


def test_dj_is_refused_and_errors_carry_the_servers_message(live_server, server_tokens):
    dj = Client(live_server.url, server_tokens["dj"])
    with pytest.raises(ApiError) as exc:
        dj.review_items()
    assert exc.value.status == 403 and "musicDirector or stationManager" in exc.value.message
    with pytest.raises(ApiError) as exc:
        dj.submit([image_bytes()], manifest({}))
    assert exc.value.status == 403
    with pytest.raises(ApiError) as exc:
        Client(live_server.url, "sb_wrong").jobs()
    assert exc.value.status == 401 and "Invalid or revoked API token" in exc.value.message
    with pytest.raises(ApiError) as exc:
        Client(live_server.url, server_tokens["director"]).job("not-a-uuid")
    assert (exc.value.status, exc.value.message) == (400, "Invalid job ID format")


def test_a_server_that_is_down_is_a_clear_error():
    with pytest.raises(ApiError) as exc:
        Client("http://127.0.0.1:9", "t").health()
    assert exc.value.status == 503 and "Cannot reach the scanbatch server" in exc.value.message


def test_wait_honours_retry_after(live_server, server_tokens):
    client = Client(live_server.url, server_tokens["director"])
    job = client.submit([image_bytes()], manifest({"stickerText": "sleep:3"}))
    polled = []
    client.wait(job, on_progress=lambda v: polled.append(time.monotonic()), max_interval=10)
    gaps = [b - a for a, b in itertools.pairwise(polled)]
    # The live_server says Retry-After: 2 while the job runs; the client waits that long, not less.
    assert gaps and min(gaps) >= 1.9


def test_export_command_uses_the_running_server(live_server, server_tokens, tmp_path):
    env = {
        **os.environ,
        "SCANBATCH_URL": live_server.url,
        "SCANBATCH_TOKEN": server_tokens["manager"],
    }
    done = subprocess.run(
        [sys.executable, "-m", "scanbatch.cli", "export", str(tmp_path / "set")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "reviewed item(s) to" in done.stdout
    assert (tmp_path / "set" / "truth.json").is_file()
    env.pop("SCANBATCH_TOKEN")
    missing = subprocess.run(
        [sys.executable, "-m", "scanbatch.cli", "export", str(tmp_path / "x")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "set SCANBATCH_TOKEN" in missing.stderr


def same_keys(found, like):
    """`found` cut down to the keys `like` has, at every depth."""
    if isinstance(like, dict):
        return {k: same_keys(found[k], v) for k, v in like.items()}
    if isinstance(like, list):
        return [same_keys(f, v) for f, v in zip(found, like, strict=True)]
    return found
