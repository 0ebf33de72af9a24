"""POST /library/scan: the station's synchronous single scan, through the real Flask app, the
fake extractor and the real catalog matcher on the shipped sample catalog."""

import io
import json

import pytest

from scanbatch.testing.imaging import image_bytes, png_header
from scanbatch.testing.servers import bearer
from scanbatch.web import create_app, prepare, shutdown
from scanbatch.web.services import services_of
from tests.webutil import ResponseChecker


@pytest.fixture
def app(settings):
    app = create_app(settings.model_copy(update={"scan_timeout": 1.0}))
    prepare(app)
    checker = ResponseChecker(app)
    yield app
    shutdown(app)
    checker.assert_clean()


def scan(client, token, n_images=2, fmt="JPEG", files=None, **fields):
    files = (
        files if files is not None else [(f"p{i}.jpg", image_bytes(fmt)) for i in range(n_images)]
    )
    data = {"images": [(io.BytesIO(b), name) for name, b in files], **fields}
    return client.post(
        "/library/scan", data=data, headers=bearer(token), content_type="multipart/form-data"
    )


def leftovers(app):
    jobs = services_of(app).settings.jobs_dir
    return sorted(p.name for p in jobs.iterdir()) if jobs.exists() else []


@pytest.mark.parametrize("photo_types", ["front,back", '["front", "back"]', " front , back "])
def test_one_record_is_read_and_matched(app, client, tokens, fake_extractor, photo_types):
    r = scan(
        client,
        tokens["director"],
        photo_types=photo_types,
        artist_name="Ruth Vega",
        album_title="Tiny Whale",
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["extraction"]["artistName"] == {"value": "Ruth Vega", "confidence": 0.9}
    assert body["matchedAlbumId"] == 1001
    assert body["matchedAlbum"]["albumTitle"] == "Tiny Whale"
    assert body["matchedAlbum"]["label"] == "Driftwood Music"
    assert fake_extractor.calls == [2]
    assert leftovers(app) == []


def test_catalog_item_id_is_taken_as_the_match(client, tokens, fake_extractor):
    r = scan(client, tokens["director"], n_images=1, catalog_item_id="1003")
    assert r.status_code == 200
    assert r.get_json()["matchedAlbumId"] == 1003
    assert r.get_json()["matchedAlbum"]["artistName"] == "Mia Hall"


def test_no_match_is_null(client, tokens, fake_extractor):
    r = scan(client, tokens["director"], n_images=1, artist_name="Nobody At All")
    assert r.status_code == 200
    assert r.get_json()["matchedAlbumId"] is None and r.get_json()["matchedAlbum"] is None


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"n_images": 0, "photo_types": "front"}, 400, "No images provided"),
        ({"n_images": 6}, 400, "Each item cannot exceed 5 images"),
        ({"n_images": 2, "photo_types": "front"}, 400, "photo_types has 1 entries but 2 images"),
        ({"n_images": 1, "photo_types": "[1]"}, 400, "photo_types must be a list of non-empty"),
        ({"n_images": 1, "photo_types": "[oops"}, 400, "photo_types"),
        ({"n_images": 1, "catalog_item_id": "abc"}, 400, "catalog_item_id must be a whole number"),
        ({"n_images": 1, "colour": "red"}, 400, "unknown key 'colour'"),
        ({"files": [("x.jpg", b"%PDF-1.7")]}, 400, "images[0] is not a supported image"),
        ({"files": [("x.png", png_header(13000, 13000))]}, 400, "images[0] is 13000x13000"),
        ({"n_images": 1, "sticker_text": "fail"}, 502, "Extraction failed: the fake model"),
        ({"n_images": 1, "sticker_text": "sleep:3"}, 504, "SCANBATCH_SCAN_TIMEOUT"),
    ],
)
def test_bad_requests_get_clear_errors_and_leave_nothing(
    app, client, tokens, fake_extractor, kwargs, status, fragment
):
    r = scan(client, tokens["director"], **kwargs)
    assert r.status_code == status
    assert fragment in r.get_json()["message"]
    if status != 504:  # a timed-out scan's folder goes when its extractor call ends
        assert leftovers(app) == []


def test_no_images_comes_first_even_without_multipart(client, tokens):
    r = client.post("/library/scan", json={"photo_types": "front"}, headers=bearer(tokens["dj"]))
    assert r.status_code == 403  # dj may not write, checked before the body
    r = client.post("/library/scan", json={"x": 1}, headers=bearer(tokens["director"]))
    assert r.status_code == 400 and r.get_json()["message"].startswith("No images provided")


def test_a_dj_may_not_scan(client, tokens):
    r = scan(client, tokens["dj"], n_images=1)
    assert r.status_code == 403


def test_the_photos_reach_the_extractor_with_their_real_types(client, tokens, fake_extractor):
    files = [("a.jpg", image_bytes("PNG")), ("b.jpg", image_bytes("HEIF"))]
    r = scan(client, tokens["director"], files=files, photo_types="front,back")
    assert r.status_code == 200
    assert fake_extractor.calls == [2]


def test_a_repeated_field_is_refused(client, tokens):
    data = {
        "images": [(io.BytesIO(image_bytes()), "a.jpg")],
        "artist_name": ["A", "B"],
    }
    r = client.post(
        "/library/scan",
        data=data,
        headers=bearer(tokens["director"]),
        content_type="multipart/form-data",
    )
    assert r.status_code == 400 and "'artist_name' was sent 2 times" in r.get_json()["message"]


def test_the_scan_route_is_documented_from_the_form_model(client):
    doc = client.get("/openapi.json").get_json()
    form = doc["paths"]["/library/scan"]["post"]["requestBody"]["content"]["multipart/form-data"]
    props = form["schema"]["properties"]
    assert {"images", "photo_types", "catalog_item_id", "sticker_text", "detected_upc"} <= set(
        props
    )
    assert props["images"]["maxItems"] == 5 and props["images"]["minItems"] == 1
    responses = doc["paths"]["/library/scan"]["post"]["responses"]
    assert json.dumps(responses["200"]).count("ScanResponse") == 1
    assert "504" in responses


def test_a_scan_refused_a_slot_is_a_503_and_never_reads_its_photos(
    app, client, tokens, fake_extractor, monkeypatch
):
    """Every slot taken (as by long scans): the next scan waits, is refused with a 503 saying
    what to do, and its photos were never read into memory; its staged files are gone."""
    from scanbatch.web.uploads import StagedFile

    reads: list[str] = []
    real = StagedFile.read_bytes
    monkeypatch.setattr(StagedFile, "read_bytes", lambda f: reads.append("read") or real(f))
    slots = services_of(app).scanner().slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        r = scan(client, tokens["director"])
    finally:
        for _ in range(taken):
            slots.release()
    assert r.status_code == 503 and "retry in a few seconds" in r.get_json()["message"]
    assert reads == [] and leftovers(app) == []
    assert scan(client, tokens["director"]).status_code == 200 and reads == ["read", "read"]
