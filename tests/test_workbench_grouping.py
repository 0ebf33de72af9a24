"""Grouping photos into records and jobs, and the page's checks, which must refuse what the
server refuses with the server's own words."""

import pytest

from scanbatch.testing.imaging import image_bytes
from scanbatch.workbench.grouping import (
    PhotoInfo,
    SelectionError,
    group_photos,
    parse_context,
    plan_jobs,
    records_of,
)

JPEG = image_bytes()


def infos(files):
    """What the page's script tells about each chosen file (here, from the bytes)."""
    return [PhotoInfo.of_bytes(i, name, data) for i, (name, data) in enumerate(files)]


def test_names_that_say_the_record_group_it_and_others_each_start_one():
    photos = group_photos(
        infos(
            [
                ("IMG_0007.JPG", JPEG),
                ("item03_1_center_label.jpg", JPEG),
                ("item00_0_front.heic", JPEG),
                ("item03_0_front_cover.jpg", JPEG),
                ("back of sleeve.png", JPEG),
            ]
        )
    )
    got = [(p.name, p.record, p.photo_type) for p in photos]
    assert got == [
        ("item00_0_front.heic", 1, "front"),
        ("item03_0_front_cover.jpg", 2, "front_cover"),
        ("item03_1_center_label.jpg", 2, "center_label"),
        ("IMG_0007.JPG", 3, "front_cover"),
        ("back of sleeve.png", 4, "back_cover"),
    ]
    records = records_of(photos, {2: {"artistName": "Can"}})
    assert [r.manifest_item() for r in records][1] == {
        "imageCount": 2,
        "photoTypes": ["front_cover", "center_label"],
        "context": {"artistName": "Can"},
    }


def test_more_than_ten_records_become_several_jobs():
    photos = group_photos(infos([(f"IMG_{i}.jpg", JPEG) for i in range(23)]))
    jobs = plan_jobs(records_of(photos))
    assert [len(j.records) for j in jobs] == [10, 10, 3]
    assert [r.number for r in jobs[2].records] == [21, 22, 23]


def test_jobs_also_stay_within_fifty_photos():
    files = [(f"item{r:02d}_{p}_front.jpg", JPEG) for r in range(12) for p in range(5)]
    jobs = plan_jobs(records_of(group_photos(infos(files))))
    assert [len(j.photos) for j in jobs] == [50, 10]


def test_a_record_with_six_photos_is_refused_with_the_servers_words():
    files = [(f"item00_{p}_front.jpg", JPEG) for p in range(6)]
    with pytest.raises(SelectionError) as exc:
        plan_jobs(records_of(group_photos(infos(files))))
    assert "Record 1 has 6 photos: each item cannot exceed 5 images" in exc.value.message


def test_a_file_that_is_not_an_image_is_named():
    files = [("a.jpg", JPEG), ("notes.jpg", b"hello, not a photo")]
    with pytest.raises(SelectionError) as exc:
        plan_jobs(records_of(group_photos(infos(files))))
    assert exc.value.message.startswith("notes.jpg: images[1] is not a supported image")


def test_a_photo_over_ten_mib_is_refused_before_sending():
    big = JPEG + b"\0" * (10 * 1024 * 1024)
    with pytest.raises(SelectionError) as exc:
        plan_jobs(records_of(group_photos(infos([("big.jpg", big)]))))
    assert "big.jpg: images[0] is" in exc.value.message
    assert "at most 10485760 bytes (10 MiB)" in exc.value.message


def test_nothing_chosen_and_a_bad_catalog_id_say_what_to_do():
    with pytest.raises(SelectionError, match="choose photos with the upload button"):
        plan_jobs([])
    with pytest.raises(SelectionError, match="Record 2: catalog item id must be a whole number"):
        parse_context(2, {"catalogItemId": "WAL 1/1"})
    assert parse_context(1, {"catalogItemId": " 1566 ", "artistName": ""}) == {
        "catalogItemId": 1566
    }
