"""Every number sent as text (a path segment, a query parameter, a form field) is read the one
way (scanbatch.wholenumbers): only the ASCII digits, at most 10 of them, within the range, else
a 400 naming the parameter. '²' passed `str.isdigit()` and then failed `int()`: a 500."""

import io
import json

import pytest

from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import bearer
from scanbatch.web.services import services_of
from scanbatch.wholenumbers import MAX_ID, number_problem
from tests.test_web_review import make_job, review_body

# Superscript two, Arabic-Indic twelve, fullwidth twelve, a long number, and the forms Python's
# int() or pydantic's lax int would read.
HOSTILE = ["²", "١٢", "１２", "9" * 400, "1_0", "+1", " 1", "1.0", "0x1"]


@pytest.mark.parametrize("raw", HOSTILE)
def test_only_ascii_digits_are_a_number(raw):
    assert number_problem(raw, 0, 9) is not None
    assert number_problem("7", 0, 9) is None
    assert number_problem("0000000007", 0, 9) is None  # ten digits: still bounded


@pytest.fixture
def job(client, app, tokens):
    return make_job(client, services_of(app).store, tokens["director"], [{}])


@pytest.mark.parametrize("raw", HOSTILE)
@pytest.mark.parametrize(
    ("template", "method", "name"),
    [
        ("/library/scan/batch/{job}/items/{raw}/photos/0", "get", "itemIndex"),
        ("/library/scan/batch/{job}/items/0/photos/{raw}", "get", "n (the photo's index)"),
        ("/library/scan/batch/{job}/items/0/photos/0?size={raw}", "get", "size"),
        ("/library/scan/batch/{job}/items/{raw}/reviews", "get", "itemIndex"),
        ("/library/scan/batch/{job}/items/{raw}/review", "put", "itemIndex"),
        ("/library/scan/review/items?limit={raw}", "get", "limit"),
        ("/library/scan/review/items?offset={raw}", "get", "offset"),
        ("/library/scan/batch?limit={raw}", "get", "limit"),
        ("/library/scan/batch?offset={raw}", "get", "offset"),
        ("/library/scan/catalog/search?q=can&limit={raw}", "get", "limit"),
    ],
)
def test_a_non_ascii_or_long_number_is_a_400_naming_the_parameter(
    client, tokens, job, template, method, name, raw
):
    from urllib.parse import quote

    url = template.format(job=job, raw=quote(raw, safe=""))
    kwargs = {"json": review_body()} if method == "put" else {}
    r = getattr(client, method)(url, headers=bearer(tokens["director"]), **kwargs)
    assert r.status_code == 400, (url, r.data[:200])
    message = r.get_json()["message"]
    assert message.startswith(f"{name} must be"), message


def test_path_indexes_say_their_range(client, tokens, job):
    r = client.get(f"/library/scan/batch/{job}/items/²/photos/0", headers=bearer(tokens["dj"]))
    assert r.get_json()["message"].startswith(
        "itemIndex must be a whole number from 0 to 9 (the digits 0-9 only), got '²'"
    )
    r = client.get(f"/library/scan/batch/{job}/items/10/photos/0", headers=bearer(tokens["dj"]))
    assert r.status_code == 400 and "itemIndex must be at most 9, got 10" in r.get_json()["message"]
    r = client.get(
        f"/library/scan/batch/{job}/items/{'9' * 400}/photos/0", headers=bearer(tokens["dj"])
    )
    assert "itemIndex must be at most 9, got a 400-digit number" in r.get_json()["message"]


@pytest.mark.parametrize("q", ["²", "١٢", "１２"])
def test_a_search_for_non_ascii_digits_is_a_word_search(client, tokens, q):
    r = client.get(f"/library/scan/catalog/search?q={q}", headers=bearer(tokens["dj"]))
    assert r.status_code == 200 and r.get_json() == {"albums": []}


def test_an_album_id_in_q_is_bounded(client, tokens):
    r = client.get(f"/library/scan/catalog/search?q={'9' * 50}", headers=bearer(tokens["dj"]))
    assert r.status_code == 400
    assert r.get_json()["message"].startswith(f"q (an album id) must be at most {MAX_ID}")
    r = client.get(f"/library/scan/catalog/search?q={MAX_ID + 1}", headers=bearer(tokens["dj"]))
    assert r.status_code == 400
    r = client.get(f"/library/scan/catalog/search?q={MAX_ID}", headers=bearer(tokens["dj"]))
    assert r.status_code == 200 and r.get_json() == {"albums": []}


@pytest.mark.parametrize("value", [int("9" * 400), MAX_ID + 1, "²", True])
def test_matched_album_id_in_a_review_body_is_bounded(client, tokens, job, value):
    r = client.put(
        f"/library/scan/batch/{job}/items/0/review",
        json=review_body(matchedAlbumId=value),
        headers=bearer(tokens["director"]),
    )
    assert r.status_code == 400 and "matchedAlbumId" in r.get_json()["message"]


@pytest.mark.parametrize("raw", ["²", "١٢", "9" * 400, "+1"])
def test_catalog_item_id_of_a_single_scan_is_ascii_digits(client, tokens, raw):
    r = client.post(
        "/library/scan",
        data={"images": [(io.BytesIO(image_bytes()), "a.jpg")], "catalog_item_id": raw},
        headers=bearer(tokens["director"]),
        content_type="multipart/form-data",
    )
    assert r.status_code == 400
    assert r.get_json()["message"].startswith("catalog_item_id must be")


@pytest.mark.parametrize("value", [int("9" * 400), MAX_ID + 1, -1])
def test_catalog_item_id_in_a_manifest_is_bounded(client, tokens, value):
    manifest = [{"imageCount": 1, "photoTypes": ["front"], "context": {"catalogItemId": value}}]
    r = client.post(
        "/library/scan/batch",
        data={"manifest": json.dumps(manifest), "images": [(io.BytesIO(image_bytes()), "a.jpg")]},
        headers=bearer(tokens["director"]),
        content_type="multipart/form-data",
    )
    assert r.status_code == 400, r.data[:300]
    assert "items[0].context.catalogItemId must be" in r.get_json()["message"]
