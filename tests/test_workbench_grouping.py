"""Grouping photos into records and jobs, and the page's checks, which must refuse what the
server refuses with the server's own words."""

import base64
import dataclasses
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from scanbatch.images import SNIFF_BYTES, check_pixels, detect_mime
from scanbatch.testing.camera import (
    LARGE_BYTES,
    browser_entry,
    camera_crate,
    camera_photo,
    exif_taken,
    photo_info,
    photo_infos,
)
from scanbatch.testing.imaging import image_bytes
from scanbatch.workbench.grouping import (
    DEFAULT_PATTERN,
    HEAD_BYTES,
    Grouping,
    PhotoInfo,
    SelectionError,
    camera_order,
    group,
    group_photos,
    move,
    parse_context,
    parse_exif_time,
    parse_pattern,
    plan_jobs,
    records_of,
    suggest,
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


# -- camera photos: grouped by pattern or by capture time, fixed by moving one photo ---------

HEAD = JPEG[:HEAD_BYTES]
START = datetime(2026, 11, 28, 10, 0, 0)


def shots(counts, within=(2, 12), between=(25, 180), *, seed=0, first=4101, exif=True):
    """Metadata of a crate as the page's script sends it (no files): `counts` photos per record,
    `within` / `between` seconds apart; and each photo's record (0-based), the truth."""
    rng = random.Random(seed)
    when, photos, truth = START, [], []
    for record, count in enumerate(counts):
        if record:
            when += timedelta(seconds=rng.uniform(*between))
        for position in range(count):
            if position:
                when += timedelta(seconds=rng.uniform(*within))
            number = (first + len(photos) - 1) % 9999 + 1
            taken = when.replace(microsecond=0)
            photos.append(
                PhotoInfo(
                    len(photos),
                    f"IMG_{number:04d}.jpg",
                    2_000_000,
                    HEAD,
                    taken if exif else None,
                    when,
                )
            )
            truth.append(record)
    return photos, truth


def as_records(truth):
    """The selection indices of each record, in record order."""
    records: dict[int, list[int]] = {}
    for index, record in enumerate(truth):
        records.setdefault(record, []).append(index)
    return list(records.values())


def indices(records):
    return [[p.index for p in r.photos] for r in records]


def chooser_order(photos):
    """The selection as a file chooser lists it: by name, indexed in that order."""
    ordered = sorted(photos, key=lambda p: p.name)
    return [dataclasses.replace(p, index=i) for i, p in enumerate(ordered)], ordered


def test_thirty_camera_records_are_grouped_by_time_and_by_pattern_without_a_typed_number(
    tmp_path,
):
    taken = camera_crate(tmp_path, records=30, per_record=3, heic_every=4)
    # The browser lists the chosen files by name; the page sends what it read of each.
    chosen = sorted(taken, key=lambda p: p.name)
    photos = [PhotoInfo.from_browser(i, browser_entry(p)) for i, p in enumerate(chosen)]
    assert photos == photo_infos(chosen)
    assert sum(p.name.endswith(".HEIC") for p in photos) == 22
    want = [[chosen.index(p) for p in taken[r * 3 : r * 3 + 3]] for r in range(30)]
    assert suggest(photos) is Grouping.TIME
    for how in (Grouping.TIME, Grouping.PATTERN):
        records = group(photos, how)
        assert indices(records) == want, how
        assert [r.number for r in records] == list(range(1, 31))
        assert {tuple(p.photo_type for p in r.photos) for r in records} == {DEFAULT_PATTERN}
        jobs = plan_jobs(records)
        assert [len(j.records) for j in jobs] == [10, 10, 10]
        # What the browser sends for job 2: those files, in the manifest's order.
        assert [chosen[i].name for i in jobs[1].files()][:3] == [
            "IMG_4131.jpg",
            "IMG_4132.HEIC",
            "IMG_4133.jpg",
        ]
        assert jobs[1].manifest()["items"][0] == {
            "imageCount": 3,
            "photoTypes": list(DEFAULT_PATTERN),
        }
        assert jobs[0].total_bytes == sum(chosen[i].stat().st_size for i in jobs[0].files())
    assert (
        group(photos, Grouping.TIME)
        .notes[0]
        .startswith("A new record starts after a pause of more than")
    )
    assert group(photos, Grouping.PATTERN).notes == []


def test_a_record_whose_first_photo_came_quickly_is_fixed_by_moving_that_photo():
    photos, truth = shots([3] * 12, seed=3)
    quick = truth.index(5)
    # The director photographed record 6's front cover 4 s after record 5's label, then put
    # record 5 away (40 s) before the back cover.
    pause = photos[quick].taken - photos[quick - 1].taken
    photos = [
        dataclasses.replace(
            p,
            taken=p.taken
            - (pause - timedelta(seconds=4))
            + timedelta(seconds=40 if p.index > quick else 0),
        )
        if p.index >= quick
        else p
        for p in photos
    ]
    records = group(photos, Grouping.TIME)
    assert [len(r.photos) for r in records][3:7] == [3, 4, 2, 3]
    assert records.notes[-1] == (
        "Records 5 (4 photos) and 6 (2 photos) do not have 3 photos. If a photo is in the "
        "wrong record, move it."
    )
    fixed = move(records, quick, 6)
    assert indices(fixed) == as_records(truth)
    assert {tuple(p.photo_type for p in r.photos) for r in fixed} == {DEFAULT_PATTERN}
    assert [p.record for r in fixed for p in r.photos] == [r + 1 for r in truth]
    assert len(fixed.notes) == 1  # only the rule: nothing odd is left
    # The grouping handed in is left as it was: the page may still show it.
    assert [len(r.photos) for r in records][4] == 4


def test_a_long_pause_inside_a_record_is_fixed_by_moving_the_lonely_photo():
    photos, truth = shots([3] * 8, seed=4)
    late = [i for i, r in enumerate(truth) if r == 2][2]  # record 3's center label, 90 s late
    photos = [
        dataclasses.replace(p, taken=p.taken + timedelta(seconds=90)) if p.index >= late else p
        for p in photos
    ]
    records = group(photos, Grouping.TIME)
    assert [len(r.photos) for r in records] == [3, 3, 2, 1, 3, 3, 3, 3, 3]
    records[4].context = {"artistName": "Can"}  # typed on the page before the fix
    fixed = move(records, late, 3)
    assert indices(fixed) == as_records(truth)
    assert [r.number for r in fixed] == list(range(1, 9))
    assert fixed[3].context == {"artistName": "Can"}  # the context moved with its record
    assert [p.photo_type for p in fixed[2].photos] == list(DEFAULT_PATTERN)


def test_moving_to_a_new_record_and_the_types_each_grouping_keeps():
    photos, _ = shots([3, 3], seed=5)
    by_pattern = group(photos, Grouping.PATTERN)
    alone = move(by_pattern, 1, 3)  # the back cover to a new record after the last
    assert indices(alone) == [[0, 2], [3, 4, 5], [1]]
    assert [[p.photo_type for p in r.photos] for r in alone] == [
        ["front_cover", "back_cover"],
        list(DEFAULT_PATTERN),
        ["front_cover"],
    ]
    assert alone.notes == [
        "Records 1 (2 photos) and 3 (1 photo) do not have 3 photos. If a photo is in the "
        "wrong record, move it."
    ]
    named = group(infos([("item00_0_front.jpg", JPEG), ("item00_1_label.jpg", JPEG)]), "names")
    kept = move(named, 1, 2)
    assert [[(p.name, p.photo_type) for p in r.photos] for r in kept] == [
        [("item00_0_front.jpg", "front")],
        [("item00_1_label.jpg", "label")],
    ]
    assert kept.notes == []
    with pytest.raises(SelectionError, match="There is no record 5: move the photo to a record "):
        move(by_pattern, 0, 5)
    with pytest.raises(SelectionError, match="Photo 10 is not in the selection"):
        move(by_pattern, 9, 1)
    # Six photos in one record after moves: the send refuses it in the server's words.
    crowded = move(move(move(by_pattern, 3, 1), 4, 1), 5, 1)
    with pytest.raises(SelectionError, match="each item cannot exceed 5 images"):
        plan_jobs(crowded)


def test_heic_photos_keep_their_exif_capture_time(tmp_path):
    taken = datetime(2026, 11, 28, 10, 15, 3)
    for name, large in (("IMG_0042.HEIC", False), ("IMG_0043.heic", True)):
        path = camera_photo(tmp_path / name, taken, large=large)
        info = photo_info(path)
        assert info.taken == taken == exif_taken(path)
        assert detect_mime(info.head) == "image/heic"
        assert check_pixels(path, "image/heic", index=0) in ((160, 120), (1600, 1200))
        with Image.open(path) as img:
            img.load()  # the padding of a large one is skipped by the decoder
    assert photo_info(tmp_path / "IMG_0043.heic").size == LARGE_BYTES
    jpeg = camera_photo(tmp_path / "IMG_0044.jpg", taken, large=True)
    assert 1_500_000 < jpeg.stat().st_size < 2_500_000 and exif_taken(jpeg) == taken
    assert exif_taken(camera_photo(tmp_path / "IMG_0045.jpg", None)) is None


def test_the_counter_wrapping_from_img_9999_to_img_0001_keeps_the_order(tmp_path):
    paths = camera_crate(tmp_path, records=3, per_record=3, first_number=9995, exif=False)
    assert [p.name for p in paths][4:6] == ["IMG_9999.jpg", "IMG_0001.jpg"]
    chosen = sorted(paths, key=lambda p: p.name)  # the chooser puts IMG_0001 first
    photos = photo_infos(chosen)
    assert suggest(photos) is Grouping.PATTERN  # no capture times
    records = group(photos, Grouping.PATTERN)
    assert [[chosen[i].name for i in r] for r in indices(records)] == [
        [p.name for p in paths[k : k + 3]] for k in (0, 3, 6)
    ]
    assert [p.name for p in camera_order(photos)] == [p.name for p in paths]
    # Metadata only, around the wrap, with times: the same records.
    timed, truth = shots([3] * 4, first=9994)
    assert [p.name for p in timed][5:7] == ["IMG_9999.jpg", "IMG_0001.jpg"]
    shuffled, ordered = chooser_order(timed)
    want = [[ordered.index(timed[i]) for i in r] for r in as_records(truth)]
    for how in (Grouping.TIME, Grouping.PATTERN):
        assert [sorted(r) for r in indices(group(shuffled, how))] == [sorted(r) for r in want]


def test_photos_without_exif_fall_back_to_the_file_time_and_say_so():
    photos, truth = shots([3] * 5, exif=False)
    assert suggest(photos) is Grouping.PATTERN
    records = group(photos, Grouping.TIME)
    assert indices(records) == as_records(truth)
    assert records.notes[0] == (
        "IMG_4101.jpg and 14 more have no capture time (EXIF DateTimeOriginal): the file's "
        "time was used instead, which may be when it was copied. Check those records, or group "
        "by pattern."
    )
    bare = [dataclasses.replace(photos[0], last_modified=None), *photos[1:]]
    with pytest.raises(SelectionError) as exc:
        group(bare, Grouping.TIME)
    assert exc.value.message == (
        "IMG_4101.jpg has no capture time (EXIF DateTimeOriginal) and no file time, so the "
        "photos cannot be grouped by time: group them by pattern instead"
    )
    assert indices(group(bare, Grouping.PATTERN)) == as_records(truth)


def test_bad_patterns_and_pauses_are_refused_with_a_sentence():
    photos, _ = shots([3, 3])
    for pattern in ("", " , ", []):
        with pytest.raises(SelectionError) as exc:
            group(photos, Grouping.PATTERN, pattern=pattern)
        assert exc.value.message.startswith(
            "The pattern is empty: name the photos of one record in the order they were taken"
        )
        assert exc.value.status == 400
    with pytest.raises(SelectionError) as exc:
        group(photos, Grouping.TIME, pattern="front cover, back cover, centre label")
    assert exc.value.message == (
        "The pattern has 'centre_label', which is not a photo type: use front_cover, "
        "back_cover, center_label, sticker, other, separated by commas"
    )
    with pytest.raises(SelectionError, match="The pattern has 6 photos: each item cannot exceed 5"):
        parse_pattern(["front_cover"] * 6)
    assert parse_pattern("Front cover, back-cover ,CENTER LABEL") == DEFAULT_PATTERN
    for gap in (0, -5, timedelta(0)):
        with pytest.raises(SelectionError, match="must be more than 0 seconds"):
            group(photos, Grouping.TIME, gap=gap)
    with pytest.raises(ValueError, match="unknown"):
        Grouping("unknown")


def test_a_pattern_that_does_not_divide_the_selection_leaves_the_last_record_short():
    photos, _ = shots([2] * 5)
    records = group(photos, Grouping.PATTERN, pattern="front_cover, back_cover, sticker")
    assert [len(r.photos) for r in records] == [3, 3, 3, 1]
    assert [p.photo_type for p in records[1].photos] == ["front_cover", "back_cover", "sticker"]
    assert records.notes == [
        "The 10 photos do not make whole records of 3: the last record (4) has 1 photo. Check "
        "that no photo is missing and that the pattern is right."
    ]
    # With the right pattern, nothing to say.
    assert group(photos, Grouping.PATTERN, pattern="front_cover, back_cover").notes == []


def test_the_servers_checks_run_on_metadata_alone():
    photos, _ = shots([3] * 11)
    pdf = dataclasses.replace(photos[4], name="scan.pdf", head=b"%PDF-1.4 not a photo")
    big = dataclasses.replace(photos[31], size=10 * 1024 * 1024 + 1)
    records = group([*photos[:4], pdf, *photos[5:]], Grouping.PATTERN)
    with pytest.raises(SelectionError) as exc:
        plan_jobs(records)
    assert exc.value.message.startswith("scan.pdf: images[4] is not a supported image")
    records = group([*photos[:31], big, *photos[32:]], Grouping.PATTERN)
    with pytest.raises(SelectionError) as exc:
        plan_jobs(records)
    # The second job's second photo: the server numbers the files of each POST from 0.
    assert exc.value.message.startswith("IMG_4132.jpg: images[1] is 10485761 bytes")
    jobs = plan_jobs(group(photos, Grouping.PATTERN))
    assert [len(j.records) for j in jobs] == [10, 1]
    assert jobs[1].files() == [30, 31, 32] and jobs[1].total_bytes == 6_000_000


def test_five_hundred_photos_of_uneven_records_group_right_and_fast():
    rng = random.Random(7)
    counts = [rng.choice((1, 2, 3, 3, 3, 4, 5)) for _ in range(190)]
    photos, truth = shots(counts, seed=7)
    photos = photos[:500]
    truth = truth[:500]
    shuffled = random.Random(8).sample(photos, len(photos))  # any order: time sorts it
    began = time.perf_counter()
    records = group(shuffled, suggest(shuffled))
    jobs = plan_jobs(records)
    fixed = move(records, records[0].photos[0].index, len(records) + 1)
    took = time.perf_counter() - began
    assert records.how is Grouping.TIME
    assert indices(records) == as_records(truth)
    assert sum(j.total_bytes for j in jobs) == 500 * 2_000_000  # 1 GB
    assert all(len(j.records) <= 10 and len(j.photos) <= 50 for j in jobs)
    assert len(fixed) == len(records) + (len(records[0].photos) > 1)
    assert took < 1.0, f"grouping 500 photos took {took:.2f} s"
    by_pattern = group(photos, Grouping.PATTERN)
    assert len(by_pattern) == 167 and by_pattern.notes[0].startswith("The 500 photos do not")


@pytest.mark.parametrize(
    "within,between",
    [((2, 12), (25, 180)), ((1, 5), (12, 40)), ((5, 20), (45, 300))],
    ids=["usual", "quick director", "slow director"],
)
def test_simulated_crates_group_right_by_time(within, between):
    """The split rule over many crates: 2 to 60 records of 1 to 5 photos (or all alike). A
    few misses are allowed: the page points at them and one move fixes each."""
    misses = 0
    for seed in range(150):
        rng = random.Random(seed)
        size = rng.randint(2, 60)
        counts = rng.choice(
            [[3] * size, [1] * size, [rng.choice((1, 2, 3, 3, 3, 4, 5)) for _ in range(size)]]
        )
        photos, truth = shots(counts, within, between, seed=seed)
        misses += indices(group(photos, Grouping.TIME)) != as_records(truth)
    assert misses <= 2  # of 150 (measured: 0, 1 and 1)


def test_a_set_pause_overrides_the_guess_and_names_come_first():
    photos, truth = shots([3] * 4, within=(20, 25), between=(40, 50))
    records = group(photos, Grouping.TIME, gap=timedelta(seconds=30))
    assert indices(records) == as_records(truth)
    assert records.notes == ["A new record starts after a pause of more than 30 s."]
    assert indices(group(photos, Grouping.TIME, gap=60)) == [list(range(12))]
    named = infos([("item01_0_front_cover.jpg", JPEG), ("item00_0_front_cover.jpg", JPEG)])
    assert suggest(named) is Grouping.NAMES
    assert indices(group(named, Grouping.NAMES)) == [[1], [0]]
    assert suggest([]) is Grouping.PATTERN and group([], Grouping.TIME) == []


def test_what_the_browser_sends_is_read_back_with_clear_sentences():
    entry = {
        "name": "IMG_4101.HEIC",
        "size": 1_234_567,
        "head": base64.b64encode(image_bytes("HEIF")[:HEAD_BYTES]).decode(),
        "taken": "2026:11:28 10:15:03\x00",
        "lastModified": 1_795_860_903_000,
    }
    info = PhotoInfo.from_browser(7, entry)
    assert (info.index, info.name, info.size, detect_mime(info.head)) == (
        7,
        "IMG_4101.HEIC",
        1_234_567,
        "image/heic",
    )
    assert info.taken == datetime(2026, 11, 28, 10, 15, 3)
    assert info.last_modified == datetime.fromtimestamp(1_795_860_903)
    blank = PhotoInfo.from_browser(0, {**entry, "taken": "0000:00:00 00:00:00"})
    assert blank.taken is None and blank.when == blank.last_modified
    assert parse_exif_time("2026-11-28T10:15:03.500") == datetime(2026, 11, 28, 10, 15, 3, 500000)
    zoned = datetime(2026, 11, 28, 9, 15, 3, tzinfo=UTC).astimezone().replace(tzinfo=None)
    assert parse_exif_time("2026-11-28T09:15:03.000Z") == zoned
    with pytest.raises(SelectionError, match=r"IMG_4101\.HEIC: the browser could not read the st"):
        PhotoInfo.from_browser(0, {**entry, "head": "not base64!"})
    with pytest.raises(SelectionError, match=r"IMG_4101\.HEIC: the browser gave no size"):
        PhotoInfo.from_browser(0, {**entry, "size": "big"})
    assert HEAD_BYTES >= SNIFF_BYTES
