"""The review routes through Flask's test client: the queue, photos and thumbnails, saving a
review, metrics, the dataset export, the catalog search, and every bad input."""

import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from PIL import Image

from scanbatch.images import THUMBNAIL_SIZES
from scanbatch.jobfolder import read_results
from scanbatch.models import ItemOutcome, Status
from scanbatch.testing.imaging import image_bytes, png_header
from scanbatch.testing.servers import bearer
from scanbatch.web.services import services_of

TRUTH = {
    "artistName": "Can",
    "albumTitle": "Tago Mago",
    "labelName": "United Artists",
    "catalogNumber": "UAS 29 211",
    "reviewText": None,
    "upc": None,
}


@pytest.fixture
def store(app):
    return services_of(app).store


@pytest.fixture
def album_ids(store):
    with store.db.read() as cur:
        rows = cur.execute("SELECT id FROM catalog_albums ORDER BY id LIMIT 3").fetchall()
    return [r[0] for r in rows]


def field(value, confidence):
    return {"value": value, "confidence": confidence}


def make_job(client, store, token, extractions, *, fmt="JPEG", finish=True, matched=None):
    """A job with one photo pair per item, its items finished with `extractions`."""
    n = len(extractions)
    manifest = {"items": [{"imageCount": 2, "photoTypes": ["front_cover", "center_label"]}] * n}
    files = []
    for i in range(2 * n):
        files.append((io.BytesIO(image_bytes(fmt, size=(640, 480))), f"p{i}"))
    r = client.post(
        "/library/scan/batch",
        data={"manifest": json.dumps(manifest), "images": files},
        headers=bearer(token),
        content_type="multipart/form-data",
    )
    assert r.status_code == 202, r.get_json()
    job_id = r.get_json()["jobId"]
    if finish:
        store.mark_processing(job_id)
        store.record_outcomes(
            job_id,
            [
                ItemOutcome(
                    item_index=i,
                    status=Status.COMPLETED,
                    extraction=e,
                    matched_album_id=(matched or [None] * n)[i],
                    finished_at=datetime.now(UTC),
                )
                for i, e in enumerate(extractions)
            ],
        )
        store.finish_job(job_id)
    return job_id


def review_body(**overrides):
    body = {"fields": dict(TRUTH), "matchedAlbumId": None, "note": "checked against the sleeve"}
    body.update(overrides)
    return body


def put_review(client, token, job_id, index, body):
    return client.put(
        f"/library/scan/batch/{job_id}/items/{index}/review", json=body, headers=bearer(token)
    )


def test_queue_lists_every_users_finished_items_lowest_confidence_first(client, store, tokens):
    sure = {"artistName": field("Can", 0.99), "albumTitle": field("Tago Mago", 0.95)}
    unsure = {"artistName": field("Cam", 0.41), "albumTitle": field("Tago Mago", 0.97)}
    job_a = make_job(client, store, tokens["director"], [sure, unsure])
    job_b = make_job(client, store, tokens["other"], [{}])  # nothing read: first of all
    make_job(client, store, tokens["other"], [sure], finish=False)  # pending: not listed

    r = client.get("/library/scan/review/items", headers=bearer(tokens["director"]))
    assert r.status_code == 200
    body = r.get_json()
    assert body["total"] == 3 and (body["limit"], body["offset"]) == (20, 0)
    order = [(i["jobId"], i["itemIndex"], i["confidence"]) for i in body["items"]]
    assert order == [(job_b, 0, None), (job_a, 1, 0.41), (job_a, 0, 0.95)]
    first = body["items"][1]
    assert first["userId"] == "alice" and first["status"] == "completed"
    assert first["review"] is None
    assert [(p["index"], p["photoType"], p["mimeType"]) for p in first["photos"]] == [
        (0, "front_cover", "image/jpeg"),
        (1, "center_label", "image/jpeg"),
    ]
    assert first["photos"][1]["url"] == f"/library/scan/batch/{job_a}/items/1/photos/1"

    # Filters: one job; one user; paging.
    only_b = client.get(
        f"/library/scan/review/items?jobId={job_b}", headers=bearer(tokens["manager"])
    ).get_json()
    assert [i["jobId"] for i in only_b["items"]] == [job_b]
    mine = client.get(
        "/library/scan/review/items?userId=alice", headers=bearer(tokens["director"])
    ).get_json()
    assert {i["userId"] for i in mine["items"]} == {"alice"} and mine["total"] == 2
    page = client.get(
        "/library/scan/review/items?limit=1&offset=1", headers=bearer(tokens["director"])
    ).get_json()
    assert [i["confidence"] for i in page["items"]] == [0.41] and page["total"] == 3


def test_dj_is_refused_and_no_token_is_401(client, tokens):
    for path in ("/library/scan/review/items", "/library/scan/review/metrics"):
        r = client.get(path, headers=bearer(tokens["dj"]))
        assert r.status_code == 403
        assert "musicDirector or stationManager" in r.get_json()["message"]
        assert client.get(path).status_code == 401


def test_review_saves_truth_with_verdicts_and_keeps_history(client, store, tokens, album_ids):
    read = {
        "artistName": field("CAN", 0.9),  # right after normalising case
        "albumTitle": field("Tago Magoo", 0.8),  # wrong: corrected
        "upc": field("0123", 0.5),  # not on the photos: spurious
    }  # label and catalog number not read: missed
    job = make_job(client, store, tokens["other"], [read], matched=[album_ids[0]])
    r = put_review(client, tokens["director"], job, 0, review_body(matchedAlbumId=album_ids[1]))
    assert r.status_code == 200, r.get_json()
    saved = r.get_json()
    assert saved["reviewer"] == "alice" and saved["revision"] == 1
    assert saved["verdicts"] == {
        "artistName": "correct",
        "albumTitle": "corrected",
        "labelName": "missed",
        "catalogNumber": "missed",
        "reviewText": "correct",
        "upc": "spurious",
    }
    assert saved["matchVerdict"] == "corrected"

    # Reviewing again replaces the current review; the first stays in the history.
    again = put_review(
        client, tokens["manager"], job, 0, review_body(matchedAlbumId=album_ids[0], note=None)
    ).get_json()
    assert again["revision"] == 2 and again["matchVerdict"] == "correct"
    queue = client.get(
        "/library/scan/review/items?state=reviewed", headers=bearer(tokens["director"])
    ).get_json()
    assert [i["review"]["revision"] for i in queue["items"]] == [2]
    assert queue["items"][0]["review"]["reviewer"] == "mia"
    assert (
        client.get("/library/scan/review/items", headers=bearer(tokens["director"])).get_json()[
            "total"
        ]
        == 0
    )  # nothing left unreviewed
    history = client.get(
        f"/library/scan/batch/{job}/items/0/reviews", headers=bearer(tokens["director"])
    ).get_json()["reviews"]
    assert [(h["revision"], h["reviewer"]) for h in history] == [(1, "alice"), (2, "mia")]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            review_body(fields={**TRUTH, "genre": "x"}),
            400,
            "fields has unknown key 'genre': allowed keys are artistName",
        ),
        (
            review_body(fields={k: v for k, v in TRUTH.items() if k != "upc"}),
            400,
            "fields.upc is required",
        ),
        (
            review_body(fields={**TRUTH, "artistName": 12}),
            400,
            "fields.artistName must be a string",
        ),
        (
            review_body(fields={**TRUTH, "reviewText": "x" * 1001}),
            400,
            "fields.reviewText is too long: at most 1000 characters",
        ),
        (review_body(matchedAlbumId=987654321), 400, "not in the catalog"),
        (review_body(matchedAlbumId="12"), 400, "matchedAlbumId"),
        ({"fields": TRUTH}, 400, "matchedAlbumId"),
        (review_body(extra=1), 400, "unknown key 'extra'"),
        ([1, 2], 400, "must be an object"),
    ],
)
def test_bad_reviews_are_400_naming_the_field_and_store_nothing(
    client, store, tokens, body, status, words
):
    job = make_job(client, store, tokens["director"], [{}])
    r = put_review(client, tokens["director"], job, 0, body)
    assert r.status_code == status
    assert words in r.get_json()["message"]
    with store.db.read() as cur:
        assert cur.execute("SELECT count(*) FROM scan_review_history").fetchone()[0] == 0


def test_review_errors_for_state_ids_and_body(client, store, tokens):
    pending = make_job(client, store, tokens["director"], [{}], finish=False)
    r = put_review(client, tokens["director"], pending, 0, review_body())
    assert r.status_code == 409 and "still pending" in r.get_json()["message"]
    done = make_job(client, store, tokens["director"], [{}])
    assert put_review(client, tokens["director"], done, 5, review_body()).status_code == 404
    assert put_review(client, tokens["director"], "nope", 0, review_body()).status_code == 400
    r = client.put(
        f"/library/scan/batch/{done}/items/0/review",
        data="not json",
        headers={**bearer(tokens["director"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "not valid JSON" in r.get_json()["message"]
    r = put_review(client, tokens["dj"], done, 0, review_body())
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("state=done", "state must be one of 'unreviewed', 'reviewed', 'all' or 'needsReview'"),
        ("sort=oldest", "sort must be one of 'confidence', 'newest' or 'audit'"),
        ("limit=0", "limit must be at least 1"),
        ("limit=101", "limit must be at most 100"),
        ("offset=-1", "offset must be at least 0"),
        ("limit=x", "limit must be a whole number from 1 to 100"),
        ("jobId=123", "jobId must be a UUID"),
    ],
)
def test_bad_queue_queries_are_400(client, tokens, query, words):
    r = client.get(f"/library/scan/review/items?{query}", headers=bearer(tokens["director"]))
    assert r.status_code == 400 and words in r.get_json()["message"]


def test_photos_originals_and_thumbnails_made_once(app, client, store, tokens):
    job = make_job(client, store, tokens["director"], [{}], fmt="HEIF")
    path = f"/library/scan/batch/{job}/items/0/photos/1"
    original = client.get(path, headers=bearer(tokens["director"]))
    assert original.status_code == 200 and original.mimetype == "image/heic"
    assert original.data[4:8] == b"ftyp"

    thumb = client.get(f"{path}?size=160", headers=bearer(tokens["manager"]))
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.data)).size == (160, 120)
    folder = services_of(app).settings.jobs_dir / job / "thumbnails"
    made = list(folder.iterdir())
    assert [p.name for p in made] == ["item00_1_160.jpg"]
    stamp = made[0].stat().st_mtime_ns
    assert client.get(f"{path}?size=160", headers=bearer(tokens["director"])).data == thumb.data
    assert made[0].stat().st_mtime_ns == stamp  # served from disk, not made again

    # Another director may read it (auditing); a dj who does not own the job may not.
    assert client.get(path, headers=bearer(tokens["other"])).status_code == 200
    assert client.get(path, headers=bearer(tokens["dj"])).status_code == 404
    for bad, status, words in [
        (f"/library/scan/batch/{job}/items/0/photos/2", 404, "has 2 photo(s)"),
        (f"/library/scan/batch/{job}/items/3/photos/0", 404, "has no item 3"),
        (f"/library/scan/batch/{job}/items/-1/photos/0", 400, "itemIndex"),
        (f"{path}?size=5", 400, "size must be at least 16"),
        (f"{path}?size=big", 400, "size must be a whole number from 16 to 4096"),
    ]:
        r = client.get(bad, headers=bearer(tokens["director"]))
        assert r.status_code == status and words in r.get_json()["message"], bad


def test_thumbnails_come_in_fixed_sizes_rounded_up(app, client, store, tokens):
    """Any of 4,081 accepted sizes used to be made and kept: 50 sizes, 50 files per photo."""
    job = make_job(client, store, tokens["director"], [{}])
    big = image_bytes("JPEG", size=(3000, 2000))  # larger than every fixed size
    photo = services_of(app).settings.jobs_dir / job / "images" / "item00_0.jpg"
    photo.write_bytes(big)
    path = f"/library/scan/batch/{job}/items/0/photos/0"
    sizes = [16 + 81 * i for i in range(50)]  # 16 .. 3985, spread over the whole range
    for size in sizes:
        r = client.get(f"{path}?size={size}", headers=bearer(tokens["director"]))
        assert r.status_code == 200 and r.mimetype == "image/jpeg"
        served = max(Image.open(io.BytesIO(r.data)).size)
        assert served == next((s for s in THUMBNAIL_SIZES if s >= size), THUMBNAIL_SIZES[-1])
    for size, expected in [(16, (160, 107)), (161, (320, 213)), (1200, (1200, 800))]:
        r = client.get(f"{path}?size={size}", headers=bearer(tokens["director"]))
        assert Image.open(io.BytesIO(r.data)).size == expected, size
    folder = photo.parent.parent / "thumbnails"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"item00_0_{s}.jpg" for s in THUMBNAIL_SIZES)


def test_photos_and_thumbnails_are_private_to_caches(client, store, tokens):
    """A private job's photo answered `Cache-Control: public, max-age=86400`: any proxy or
    shared cache between the station and the server could keep and hand it out."""
    job = make_job(client, store, tokens["director"], [{}])
    path = f"/library/scan/batch/{job}/items/0/photos/0"
    for url in (path, f"{path}?size=320"):
        r = client.get(url, headers=bearer(tokens["director"]))
        assert r.status_code == 200
        directives = {d.strip() for d in r.headers["Cache-Control"].split(",")}
        assert "private" in directives and "public" not in directives, url
        assert "max-age=86400" in directives and "no-cache" not in directives, url


def test_a_thumbnail_of_a_photo_over_the_pixel_limit_is_refused_before_decoding(
    app, client, store, tokens
):
    """The upload refuses these from the header; one already on disk (an older store) must not
    be decoded: 13000x13000 is 169 MB of pixels that Pillow would allocate."""
    job = make_job(client, store, tokens["director"], [{}], fmt="PNG")
    photo = services_of(app).settings.jobs_dir / job / "images" / "item00_0.png"
    photo.write_bytes(png_header(13000, 13000))
    r = client.get(
        f"/library/scan/batch/{job}/items/0/photos/0?size=160",
        headers=bearer(tokens["director"]),
    )
    assert r.status_code == 422, r.data[:300]
    assert "13000x13000 pixels" in r.get_json()["message"]
    assert "no size=" in r.get_json()["message"]


def test_metrics_change_when_a_field_is_corrected(client, store, tokens):
    read = {"artistName": field("Can", 0.9), "albumTitle": field("Tago", 0.7)}
    job = make_job(client, store, tokens["director"], [read, read])
    empty = client.get("/library/scan/review/metrics", headers=bearer(tokens["director"]))
    body = empty.get_json()
    assert (body["reviewedItems"], body["population"], len(body["groups"])) == (0, 2, 1)
    nothing = body["groups"][0]
    assert (nothing["population"], nothing["reviewed"], nothing["items"]) == (2, 0, 0)
    assert nothing["fields"]["artistName"]["estimate"] is None
    assert (
        "Review at least 2 more record(s) from the Audit sample"
        in (nothing["fields"]["artistName"]["estimateNote"])
    )

    put_review(client, tokens["director"], job, 0, review_body(fields={**TRUTH}))
    fields_ok = {**TRUTH, "albumTitle": "Tago"}
    put_review(client, tokens["director"], job, 1, review_body(fields=fields_ok))
    m = client.get("/library/scan/review/metrics", headers=bearer(tokens["director"])).get_json()
    assert m["reviewedItems"] == 2
    (group,) = m["groups"]
    assert group["group"] is None
    assert group["fields"]["albumTitle"]["accuracy"] == 0.5
    assert group["fields"]["artistName"]["accuracy"] == 1.0
    bucket = group["fields"]["albumTitle"]["calibration"][1]
    assert (bucket["confidenceFrom"], bucket["confidenceTo"], bucket["n"]) == (0.5, 0.7, 0)

    by_prompt = client.get(
        "/library/scan/review/metrics?groupBy=extractor", headers=bearer(tokens["director"])
    ).get_json()
    assert by_prompt["groupBy"] == "extractor" and by_prompt["groups"][0]["items"] == 2
    r = client.get("/library/scan/review/metrics?groupBy=user", headers=bearer(tokens["manager"]))
    assert r.status_code == 400 and "groupBy must be one of" in r.get_json()["message"]
    # Both reviewed: nothing is left to estimate, the figure over all records is exact.
    (group,) = m["groups"]
    estimate = group["fields"]["albumTitle"]["estimate"]
    assert estimate == {
        "accuracy": 0.5,
        "low": 0.5,
        "high": 0.5,
        "method": "all-reviewed",
        "auditReviews": 2,
        "reviewsForTwoPoints": 0,
    }


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("groupBy=user", "groupBy must be one of"),
        ("since=yesterday", "since"),
        ("until=2026-01-01T00:00:00", "until"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until must be later than since (the time range is [since, until)): swap them",
        ),
        ("since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until must be later"),
        ("extractor=" + "x" * 201, "extractor"),
        ("colour=red", "colour"),
    ],
)
def test_bad_metrics_queries_are_400(client, tokens, query, words):
    r = client.get(f"/library/scan/review/metrics?{query}", headers=bearer(tokens["director"]))
    message = r.get_json()["message"]
    assert r.status_code == 400 and words in message and "Value error" not in message, message


def test_dataset_export_zip_holds_photos_truth_manifest_and_results(
    client, store, tokens, tmp_path
):
    job = make_job(client, store, tokens["director"], [{"artistName": field("Can", 0.9)}, {}])
    put_review(client, tokens["director"], job, 1, review_body())
    r = client.get("/library/scan/review/dataset", headers=bearer(tokens["manager"]))
    assert r.status_code == 200 and r.mimetype == "application/zip"
    assert r.headers["X-Reviewed-Items"] == "1"
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    assert sorted(zf.namelist()) == [
        "item00_0_front_cover.jpg",
        "item00_1_center_label.jpg",
        "manifest.json",
        "results.jsonl",
        "truth.json",
    ]
    truth = json.loads(zf.read("truth.json"))["items"]
    assert truth[0]["source"] == {"jobId": job, "itemIndex": 1}
    assert truth[0]["artistName"] == "Can" and truth[0]["albumId"] is None
    assert truth[0]["photos"] == ["item00_0_front_cover.jpg", "item00_1_center_label.jpg"]
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest == {"items": [{"imageCount": 2, "photoTypes": ["front_cover", "center_label"]}]}
    assert json.loads(zf.read("results.jsonl"))["itemIndex"] == 0
    # The lines are the kernel's (ItemOutcome), read by the one reader `scanbatch eval` uses.
    results = tmp_path / "results.jsonl"
    results.write_bytes(zf.read("results.jsonl"))
    [line] = read_results(results)[0]
    assert (line.item_index, line.status) == (0, Status.COMPLETED)
    assert line.extraction == json.loads(zf.read("results.jsonl"))["extraction"]
    later = client.get(
        "/library/scan/review/dataset?since=2999-01-01T00:00:00Z",
        headers=bearer(tokens["manager"]),
    )
    assert later.headers["X-Reviewed-Items"] == "0"
    bad = client.get("/library/scan/review/dataset?since=yesterday", headers=bearer(tokens["dj"]))
    assert bad.status_code == 403
    bad = client.get(
        "/library/scan/review/dataset?since=yesterday", headers=bearer(tokens["manager"])
    )
    assert bad.status_code == 400 and "since must be an ISO 8601 time" in bad.get_json()["message"]


def test_deleting_a_reviewed_job_needs_a_station_manager_and_force(client, store, tokens):
    job = make_job(client, store, tokens["director"], [{}])
    put_review(client, tokens["director"], job, 0, review_body())
    r = client.delete(f"/library/scan/batch/{job}", headers=bearer(tokens["director"]))
    assert r.status_code == 409 and "1 reviewed item(s)" in r.get_json()["message"]
    r = client.delete(f"/library/scan/batch/{job}?force=true", headers=bearer(tokens["director"]))
    assert r.status_code == 403
    kept = client.get(f"/library/scan/batch/{job}", headers=bearer(tokens["director"]))
    assert kept.status_code == 200
    r = client.delete(f"/library/scan/batch/{job}?force=true", headers=bearer(tokens["manager"]))
    assert r.status_code == 204
    with store.db.read() as cur:
        assert cur.execute("SELECT count(*) FROM scan_reviews").fetchone()[0] == 0
        assert cur.execute("SELECT count(*) FROM scan_review_history").fetchone()[0] == 0
    # A job without reviews deletes as before.
    plain = make_job(client, store, tokens["director"], [{}])
    assert (
        client.delete(
            f"/library/scan/batch/{plain}", headers=bearer(tokens["director"])
        ).status_code
        == 204
    )


def test_catalog_search_by_words_and_id(client, store, tokens, album_ids):
    with store.db.read() as cur:
        artist, title = cur.execute(
            "SELECT artist_name, album_title FROM catalog_matched_album WHERE id = ?",
            [album_ids[0]],
        ).fetchone()
    words = f"{artist.split()[0]} {title.split()[0]}".lower()
    r = client.get(f"/library/scan/catalog/search?q={words}", headers=bearer(tokens["dj"]))
    assert r.status_code == 200
    assert album_ids[0] in [a["id"] for a in r.get_json()["albums"]]
    by_id = client.get(
        f"/library/scan/catalog/search?q={album_ids[0]}", headers=bearer(tokens["dj"])
    ).get_json()["albums"]
    assert [a["id"] for a in by_id] == [album_ids[0]]
    assert {"artistName", "albumTitle", "codeLetters"} <= set(by_id[0])
    wild = client.get("/library/scan/catalog/search?q=%25", headers=bearer(tokens["dj"]))
    assert wild.get_json()["albums"] == []  # a % is a character, not a wildcard
    r = client.get("/library/scan/catalog/search?q=", headers=bearer(tokens["dj"]))
    assert r.status_code == 400 and "q must not be empty" in r.get_json()["message"]
    r = client.get("/library/scan/catalog/search?q=a&limit=51", headers=bearer(tokens["dj"]))
    assert r.status_code == 400
