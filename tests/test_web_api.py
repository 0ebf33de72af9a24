"""The HTTP contract through Flask's test client (the runner is not started here: jobs stay
pending; tests/test_server.py runs real jobs on a real server)."""

import io
import json
import shutil
import uuid

import pytest

from scanbatch.images import MAX_IMAGE_BYTES
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import bearer
from scanbatch.web import create_app, prepare, shutdown
from scanbatch.web.services import services_of
from tests.webutil import batch_files


def post(client, token, manifest, files, headers=None):
    data = {"images": [(io.BytesIO(b), name) for name, b in files]}
    if manifest is not None:
        data["manifest"] = manifest
    return client.post(
        "/library/scan/batch",
        data=data,
        headers={**bearer(token), **(headers or {})},
        content_type="multipart/form-data",
    )


def jobs_dir_entries(app):
    jobs = services_of(app).settings.jobs_dir
    return sorted(p.name for p in jobs.iterdir()) if jobs.exists() else []


def test_post_returns_202_with_location_and_stores_the_folder(app, client, tokens):
    manifest, files = batch_files(2, 2)
    r = post(client, tokens["director"], manifest, files)
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "pending" and body["totalItems"] == 2
    assert r.headers["Location"] == f"/library/scan/batch/{body['jobId']}"
    folder = services_of(app).settings.jobs_dir / body["jobId"]
    names = sorted(p.name for p in (folder / "images").iterdir())
    assert names == ["item00_0.jpg", "item00_1.jpg", "item01_0.jpg", "item01_1.jpg"]
    assert jobs_dir_entries(app) == [body["jobId"]]  # no staging left behind
    job = client.get(r.headers["Location"], headers=bearer(tokens["director"]))
    assert job.status_code == 200
    assert job.headers["Retry-After"] == "2"
    assert [x["status"] for x in job.get_json()["results"]] == ["pending", "pending"]


def test_bare_array_manifest_and_real_types_from_bytes(app, client, tokens):
    files = [
        ("a.jpg", image_bytes("PNG")),
        ("b.png", image_bytes("HEIF")),
        ("c", image_bytes("WEBP")),
    ]
    manifest = json.dumps([{"imageCount": 3, "photoTypes": ["front", "back", "photo"]}])
    r = post(client, tokens["director"], manifest, files)
    assert r.status_code == 202
    folder = services_of(app).settings.jobs_dir / r.get_json()["jobId"]
    assert sorted(p.name for p in (folder / "images").iterdir()) == [
        "item00_0.png",
        "item00_1.heic",
        "item00_2.webp",
    ]


@pytest.mark.parametrize(
    ("manifest", "n_files", "message"),
    [
        ('[{"imageCount": 1, "photoTypes": ["front"]}]', 0, "No images provided"),
        (None, 1, "Missing or invalid manifest field"),
        ("{oops", 1, "Invalid JSON in manifest field"),
        ('{"items": []}', 1, "Manifest must contain a non-empty items array"),
        (
            json.dumps([{"imageCount": 1, "photoTypes": ["f"]}] * 11),
            11,
            "Batch cannot exceed 10 items",
        ),
        (
            json.dumps([{"imageCount": 6, "photoTypes": ["f"] * 6}]),
            6,
            "Each item cannot exceed 5 images",
        ),
        (
            '[{"imageCount": 2, "photoTypes": ["f", "b"]}]',
            1,
            "Image count mismatch: 1 files uploaded but manifest expects 2",
        ),
        (
            '[{"imageCount": -1, "photoTypes": []}]',
            1,
            "items[0].imageCount must be at least 1, got -1",
        ),
    ],
)
def test_validation_messages_and_nothing_left_behind(
    app, client, tokens, manifest, n_files, message
):
    files = [(f"{i}.jpg", image_bytes()) for i in range(n_files)]
    r = post(client, tokens["director"], manifest, files)
    assert r.status_code == 400
    assert r.get_json() == {"status": 400, "message": message}
    assert jobs_dir_entries(app) == []
    assert services_of(app).store.list_jobs("alice").total == 0


def test_more_than_50_files_is_refused_while_reading(app, client, tokens):
    manifest = json.dumps([{"imageCount": 5, "photoTypes": ["f"] * 5}] * 10)
    r = post(
        client, tokens["director"], manifest, [(f"{i}.jpg", b"\xff\xd8\xff") for i in range(51)]
    )
    assert r.get_json() == {"status": 400, "message": "Total images cannot exceed 50"}
    assert jobs_dir_entries(app) == []


def test_a_file_that_is_not_an_image_is_named(app, client, tokens):
    manifest, files = batch_files(2)
    files[1] = ("cover.jpg", b"%PDF-1.7 not really a jpeg")
    r = post(client, tokens["director"], manifest, files)
    assert r.status_code == 400
    assert r.get_json()["message"].startswith("images[1] is not a supported image")
    assert jobs_dir_entries(app) == []


def test_an_oversized_file_is_413_and_leaves_nothing(app, client, tokens):
    manifest, files = batch_files(1)
    files[0] = ("big.jpg", b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES)
    r = post(client, tokens["director"], manifest, files)
    assert r.status_code == 413
    assert "images[0]" in r.get_json()["message"] and "10 MiB" in r.get_json()["message"]
    assert jobs_dir_entries(app) == []


def test_not_multipart_is_a_clear_400(client, tokens):
    r = client.post("/library/scan/batch", json={"items": []}, headers=bearer(tokens["director"]))
    assert r.status_code == 400 and "multipart/form-data" in r.get_json()["message"]


def test_auth_401_403_and_other_users_job_is_404(client, tokens):
    manifest, files = batch_files(1)
    assert post(client, "nope", manifest, files).status_code == 401
    r = client.get("/library/scan/batch", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and "Bearer" in r.get_json()["message"]
    assert client.get("/library/scan/batch").get_json()["status"] == 401
    r = post(client, tokens["dj"], manifest, files)
    assert r.status_code == 403 and "dj" in r.get_json()["message"]
    job_id = post(client, tokens["director"], manifest, files).get_json()["jobId"]
    theirs = client.get(f"/library/scan/batch/{job_id}", headers=bearer(tokens["other"]))
    missing = client.get(f"/library/scan/batch/{uuid.uuid4()}", headers=bearer(tokens["other"]))
    assert theirs.get_json() == missing.get_json() == {"status": 404, "message": "Job not found"}
    bad = client.get("/library/scan/batch/123", headers=bearer(tokens["other"]))
    assert bad.get_json() == {"status": 400, "message": "Invalid job ID format"}
    # uuid.UUID reads other scripts' digits as 0-9: the same job under another spelling.
    arabic = job_id.translate({ord(d): chr(0x660 + int(d)) for d in "0123456789"})
    r = client.get(f"/library/scan/batch/{arabic}", headers=bearer(tokens["director"]))
    assert r.get_json() == {"status": 400, "message": "Invalid job ID format"}
    # A dj may read (its own, empty) list.
    assert client.get("/library/scan/batch", headers=bearer(tokens["dj"])).status_code == 200


def test_list_pagination_and_clamping(client, tokens):
    manifest, files = batch_files(1)
    ids = [post(client, tokens["director"], manifest, files).get_json()["jobId"] for _ in range(3)]
    h = bearer(tokens["director"])
    page = client.get("/library/scan/batch?limit=2&offset=1", headers=h).get_json()
    assert [j["jobId"] for j in page["jobs"]] == [ids[1], ids[0]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert set(page["jobs"][0]) == {
        "jobId",
        "status",
        "totalItems",
        "completedItems",
        "failedItems",
        "createdAt",
        "updatedAt",
    }
    assert client.get("/library/scan/batch?limit=500", headers=h).get_json()["limit"] == 100
    assert client.get("/library/scan/batch?limit=0", headers=h).get_json()["limit"] == 1
    assert client.get("/library/scan/batch", headers=h).get_json()["limit"] == 20
    r = client.get("/library/scan/batch?offset=-1", headers=h)
    assert r.status_code == 400 and "offset" in r.get_json()["message"]
    r = client.get("/library/scan/batch?limit=ten", headers=h)
    assert r.status_code == 400 and "limit must be a whole number" in r.get_json()["message"]
    assert (
        client.get("/library/scan/batch", headers=bearer(tokens["other"])).get_json()["total"] == 0
    )


def test_idempotency_key(client, tokens):
    manifest, files = batch_files(1)
    h = {"Idempotency-Key": "abc-1"}
    first = post(client, tokens["director"], manifest, files, h)
    again = post(client, tokens["director"], manifest, files, h)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["jobId"] == again.get_json()["jobId"]
    other_user = post(client, tokens["other"], manifest, files, h)
    assert other_user.get_json()["jobId"] != first.get_json()["jobId"]
    changed = post(client, tokens["director"], manifest, [("x.png", image_bytes("PNG"))], h)
    assert changed.status_code == 422 and "Idempotency-Key" in changed.get_json()["message"]
    # The same photos and manifest in another mode are another request, not a retry.
    as_backlog = client.post(
        "/library/scan/batch",
        data={
            "images": [(io.BytesIO(b), name) for name, b in files],
            "manifest": manifest,
            "mode": "backlog",
        },
        headers={**bearer(tokens["director"]), **h},
        content_type="multipart/form-data",
    )
    assert as_backlog.status_code == 422
    listing = client.get("/library/scan/batch", headers=bearer(tokens["director"])).get_json()
    assert listing["total"] == 1


def test_delete_by_owner_or_manager_only(app, client, tokens):
    manifest, files = batch_files(1)
    job_id = post(client, tokens["director"], manifest, files).get_json()["jobId"]
    url = f"/library/scan/batch/{job_id}"
    assert client.delete(url, headers=bearer(tokens["other"])).status_code == 404
    assert client.delete(url, headers=bearer(tokens["dj"])).status_code == 403
    assert client.delete(url, headers=bearer(tokens["manager"])).status_code == 204
    assert client.get(url, headers=bearer(tokens["director"])).status_code == 404
    assert jobs_dir_entries(app) == []


def test_cancel_a_queued_job(client, tokens):
    manifest, files = batch_files(2)
    job_id = post(client, tokens["director"], manifest, files).get_json()["jobId"]
    r = client.post(f"/library/scan/batch/{job_id}/cancel", headers=bearer(tokens["director"]))
    body = r.get_json()
    assert r.status_code == 200 and body["status"] == "failed"
    assert [x["errorMessage"] for x in body["results"]] == ["cancelled", "cancelled"]
    assert {x["errorCode"] for x in body["results"]} == {"cancelled"}
    assert "Retry-After" not in r.headers


def test_notebook_before_processing_is_a_clear_404(client, tokens):
    manifest, files = batch_files(1)
    job_id = post(client, tokens["director"], manifest, files).get_json()["jobId"]
    r = client.get(f"/library/scan/batch/{job_id}/notebook", headers=bearer(tokens["director"]))
    assert r.status_code == 404 and "notebook does not exist yet" in r.get_json()["message"]


def test_flask_errors_use_the_one_shape(client, tokens):
    assert client.get("/nope").get_json()["status"] == 404
    r = client.put("/library/scan/batch")
    assert r.status_code == 405 and r.get_json()["status"] == 405
    assert "POST" in r.headers["Allow"]
    r = client.post(
        "/library/scan/batch",
        data=b"x" * 10,
        headers={"Content-Type": "multipart/form-data; boundary=x", **bearer(tokens["director"])},
        environ_overrides={"CONTENT_LENGTH": str(600 * 1024 * 1024)},  # declared, not sent
    )
    assert r.status_code == 413
    assert r.get_json()["message"].startswith("Request too large: the body may be at most")


def test_unexpected_errors_are_a_json_500_without_a_trace(app, client, tokens, monkeypatch):
    store = services_of(app).store
    monkeypatch.setattr(store, "list_jobs", lambda *a: 1 / 0)
    r = client.get("/library/scan/batch", headers=bearer(tokens["director"]))
    assert r.status_code == 500
    assert r.get_json() == {
        "status": 500,
        "message": "Internal server error; the details are in the server log",
    }


def test_server_refuses_to_start_with_an_unusable_extractor(settings, monkeypatch):
    from scanbatch.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown extractor 'nope'"):
        create_app(settings.model_copy(update={"extractor": "nope"}))


def test_healthz_says_warming_while_no_kernel_is_ready(client, settings):
    # This app's runner is not started: no kernel is coming, and a job would wait.
    body = client.get("/healthz").get_json()
    assert body["status"] == "warming" and body["warmKernels"] == 0
    assert body["queuedJobs"] == 0 and body["problem"] is None
    # whether a backlog job goes through a batch API here (the page's upload choice says so)
    assert body["extractorCanBatch"] is (body["extractor"] == "gemini")
    # The data folder's free space, for a station's monitoring (a full disk makes writes 507).
    assert abs(body["diskFreeBytes"] - shutil.disk_usage(settings.data_dir).free) < 256 * 1024**2


# -- the probe's cases (issue 13) --


def test_a_deeply_nested_manifest_is_a_400_not_a_500(app, client, tokens):
    for manifest in ("[" * 982 + "]" * 982, '{"items": [' + '{"a": ' * 20000 + "1" + "}" * 20000):
        r = post(client, tokens["director"], manifest, [("a.jpg", image_bytes())])
        assert r.status_code == 400
        assert r.get_json()["message"].startswith("Invalid JSON in manifest field")
    assert jobs_dir_entries(app) == []


def test_a_pixel_bomb_is_refused_at_upload_naming_the_file(app, client, tokens):
    from scanbatch.testing.imaging import png_header

    for side in (13000, 30000):
        manifest = json.dumps([{"imageCount": 2, "photoTypes": ["front", "back"]}])
        files = [("ok.jpg", image_bytes()), ("bomb.png", png_header(side, side))]
        r = post(client, tokens["director"], manifest, files)
        assert r.status_code == 400
        message = r.get_json()["message"]
        assert message.startswith("images[1] is ") and "50,000,000 pixels" in message
    assert jobs_dir_entries(app) == []


def test_abandoned_staging_is_removed_at_start(settings):
    jobs = settings.jobs_dir
    left = [jobs / ".incoming-0b7c", jobs / ".scan-1d2e"]
    for folder in left:
        folder.mkdir(parents=True)
        (folder / "00").write_bytes(b"\0" * 1024)
    job = jobs / "3f1c0a52-0b7c-4d4e-8f00-000000000000"
    job.mkdir()
    app = create_app(settings)
    prepare(app)
    try:
        assert not any(f.exists() for f in left)
        assert job.exists()  # job folders are the runner's business, not staging
    finally:
        shutdown(app)


def test_a_big_manifest_field_says_the_field_limit(client, tokens):
    r = post(
        client, tokens["director"], "[" + " " * (1024 * 1024) + "]", [("a.jpg", image_bytes())]
    )
    assert r.status_code == 413
    message = r.get_json()["message"]
    assert "form field is over 256 KiB" in message and "images of" not in message


def test_too_many_parts_says_the_part_limit(client, tokens):
    data = {f"f{i}": "x" for i in range(1001)}
    r = client.post(
        "/library/scan/batch",
        data=data,
        headers=bearer(tokens["director"]),
        content_type="multipart/form-data",
    )
    assert r.status_code == 413
    assert r.get_json()["message"].startswith("Too many form parts: a request may have at most")


def test_no_files_and_not_multipart_is_no_images_provided_first(client, tokens):
    h = bearer(tokens["director"])
    for kwargs in (
        {"data": {"manifest": '[{"imageCount": 1, "photoTypes": ["f"]}]'}},  # urlencoded
        {"json": [{"imageCount": 1, "photoTypes": ["f"]}]},
        {"data": b"", "content_type": "text/plain"},
    ):
        r = client.post("/library/scan/batch", headers=h, **kwargs)
        assert r.status_code == 400
        message = r.get_json()["message"]
        assert message.startswith("No images provided: ") and "multipart/form-data" in message


def test_two_manifest_fields_are_refused(app, client, tokens):
    manifest, files = batch_files(1)
    r = client.post(
        "/library/scan/batch",
        data={
            "images": [(io.BytesIO(b), n) for n, b in files],
            "manifest": [manifest, '[{"imageCount": 9}]'],
        },
        headers=bearer(tokens["director"]),
        content_type="multipart/form-data",
    )
    assert r.status_code == 400 and "'manifest' was sent 2 times" in r.get_json()["message"]
    assert jobs_dir_entries(app) == []


def test_a_manifest_that_is_not_utf8_is_refused(app, client, tokens):
    boundary = "b0und"
    manifest = b'[{"imageCount": 1, "photoTypes": ["fr\xffont"]}]'
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n'.encode()
        + manifest
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"'
        "\r\nContent-Type: image/jpeg\r\n\r\n".encode()
        + image_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = client.post(
        "/library/scan/batch",
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            **bearer(tokens["director"]),
        },
    )
    assert r.status_code == 400 and "not valid UTF-8" in r.get_json()["message"]
    assert jobs_dir_entries(app) == []


def test_a_station_manager_administers_every_job(client, tokens):
    manifest, files = batch_files(1)
    job_id = post(client, tokens["director"], manifest, files).get_json()["jobId"]
    url = f"/library/scan/batch/{job_id}"
    manager = bearer(tokens["manager"])
    assert client.get(url, headers=manager).get_json()["jobId"] == job_id
    assert client.get(url + "/notebook", headers=manager).status_code == 404  # not written yet
    assert client.post(url + "/cancel", headers=manager).get_json()["jobId"] == job_id
    # Others still cannot see it, and the list stays each caller's own.
    assert client.get(url, headers=bearer(tokens["other"])).status_code == 404
    assert client.get("/library/scan/batch", headers=manager).get_json()["total"] == 0


def test_keys_through_the_server_take_effect_at_once(client, tokens):
    manager = bearer(tokens["manager"])
    r = client.post("/admin/keys", json={"user": "newbie", "role": "dj"}, headers=manager)
    assert r.status_code == 201
    created = r.get_json()
    assert created["userId"] == "newbie" and created["token"].startswith("sb_")
    new = bearer(created["token"])
    assert client.get("/library/scan/batch", headers=new).status_code == 200
    listing = client.get("/admin/keys", headers=manager).get_json()["keys"]
    assert created["id"] in [k["id"] for k in listing]
    assert all("token" not in k for k in listing)
    r = client.delete(f"/admin/keys/{created['id']}", headers=manager)
    assert r.status_code == 200 and r.get_json()["revokedAt"]
    assert client.get("/library/scan/batch", headers=new).status_code == 401
    assert client.delete(f"/admin/keys/{created['id']}", headers=manager).status_code == 404


def test_only_a_station_manager_manages_keys(client, tokens):
    for who in ("director", "dj"):
        r = client.get("/admin/keys", headers=bearer(tokens[who]))
        assert r.status_code == 403 and "stationManager" in r.get_json()["message"]
    manager = bearer(tokens["manager"])
    r = client.post("/admin/keys", json={"user": "x", "role": "admin"}, headers=manager)
    assert r.status_code == 400 and "role" in r.get_json()["message"]
    assert "'dj', 'musicDirector' or 'stationManager'" in r.get_json()["message"]
    r = client.post("/admin/keys", data="user=x", headers=manager)
    assert r.status_code == 400 and "application/json" in r.get_json()["message"]


def test_list_offset_out_of_range_is_a_400(client, tokens):
    h = bearer(tokens["director"])
    r = client.get("/library/scan/batch?offset=99999999999999999999", headers=h)
    assert r.status_code == 400 and r.get_json()["message"].startswith("offset must be at most")
