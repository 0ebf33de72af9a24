import json

from scanbatch.jobfolder import JobFolder
from scanbatch.models import CatalogMatch, Manifest, ManifestItem, Photo, Status
from scanbatch.pipeline import process_folder, process_item
from scanbatch.testing.imaging import image_bytes


def make_folder(tmp_path, scripts):
    items = [
        {
            "imageCount": 2,
            "photoTypes": ["front", "back"],
            "context": {"artistName": f"Artist {i}", "albumTitle": f"Title {i}", "stickerText": s},
        }
        for i, s in enumerate(scripts)
    ]
    manifest = Manifest.model_validate({"items": items})
    folder = JobFolder.for_job(tmp_path, "job")
    folder.create(manifest)
    for i in range(len(items)):
        folder.write_image(i, 0, image_bytes("JPEG"))
        folder.write_image(i, 1, image_bytes("WEBP"))
    return folder


class OneMatcher:
    def match(self, context, extraction):
        if extraction.value("artist_name") == "Artist 0":
            return CatalogMatch(album_id=7, score=0.97, method="extraction")
        return None


def test_failures_are_recorded_and_do_not_stop_other_items(tmp_path, fake_extractor):
    folder = make_folder(tmp_path, ["", "fail", "crash", ""])
    seen = []
    outcomes = process_folder(folder, fake_extractor, matcher=OneMatcher(), on_item=seen.append)
    assert len(outcomes) == len(seen) == 4
    by_index = folder.outcomes()
    assert by_index[0].status == Status.COMPLETED
    assert by_index[0].extraction["artistName"] == {"value": "Artist 0", "confidence": 0.9}
    assert (by_index[0].matched_album_id, by_index[0].match_score) == (7, 0.97)
    assert by_index[0].usage.raw_response == "image/jpeg,image/webp"
    assert by_index[0].usage.latency_ms is not None
    assert by_index[3].matched_album_id is None
    assert by_index[1].status == Status.FAILED
    assert by_index[1].error_message == "the fake model refused"
    assert (by_index[1].error_code, by_index[1].usage.raw_response) == ("blocked", "{}")
    assert by_index[2].error_message == "RuntimeError: fake crash"
    assert by_index[2].error_code == "internal_error"


def test_items_run_concurrently_within_the_bound(tmp_path, fake_extractor):
    folder = make_folder(tmp_path, ["sleep:0.2"] * 6)
    process_folder(folder, fake_extractor, concurrency=3)
    # Three at once, never more: the bound holds and the items do overlap.
    assert type(fake_extractor).max_active == 3


def test_items_already_in_results_are_not_extracted_again(tmp_path, fake_extractor):
    folder = make_folder(tmp_path, ["", "", ""])
    process_folder(folder, fake_extractor)
    lines = folder.results_path.read_text().splitlines()
    folder.results_path.write_text("\n".join(lines[:1]) + "\n")  # only one item survived a crash
    assert len(folder.pending()) == 2
    type(fake_extractor).reset()
    process_folder(folder, fake_extractor)
    assert len(type(fake_extractor).calls) == 2
    indexes = sorted(
        json.loads(line)["itemIndex"] for line in folder.results_path.read_text().splitlines()
    )
    assert indexes == [0, 1, 2]


class UnknownIdMatcher:
    def match(self, context, extraction):
        return CatalogMatch(album_id=None, score=0.0, method="catalogItemId", note="id 9 unknown")


def test_a_match_note_without_an_album_is_kept(tmp_path, fake_extractor):
    folder = make_folder(tmp_path, [""])
    (outcome,) = process_folder(folder, fake_extractor, matcher=UnknownIdMatcher())
    assert outcome.matched_album_id is None and outcome.match_score is None
    assert outcome.match_note == "id 9 unknown"


def test_an_item_is_processed_from_photos_in_memory(fake_extractor):
    """The synchronous scan's path: no job folder, the photos with the types read at staging."""
    item = ManifestItem(image_count=2, photo_types=["front", "back"], context={"artistName": "A"})
    photos = [
        Photo(data=image_bytes("PNG"), mime_type="image/png", photo_type="front"),
        Photo(data=image_bytes("HEIF"), mime_type="image/heic", photo_type="back"),
    ]
    outcome = process_item(photos, 0, item, fake_extractor, OneMatcher())
    assert outcome.status == Status.COMPLETED and outcome.item_index == 0
    assert outcome.extraction["artistName"]["value"] == "A"
    assert outcome.usage.raw_response == "image/png,image/heic"
    assert type(fake_extractor).calls == [2]


def test_a_photo_missing_from_the_folder_fails_its_item_alone(tmp_path, fake_extractor):
    folder = make_folder(tmp_path, ["", ""])
    folder.image_paths(1)[0].unlink()
    outcomes = {o.item_index: o for o in process_folder(folder, fake_extractor)}
    assert outcomes[0].status == Status.COMPLETED
    assert outcomes[1].status == Status.FAILED and outcomes[1].error_code == "photos_missing"
    assert outcomes[1].error_message.startswith("item 1: its job folder holds 1 of its 2 photos")
    assert not outcomes[1].retryable
