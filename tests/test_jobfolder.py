import json
from datetime import UTC, datetime

from scanbatch.jobfolder import JobFolder, ResultsWriter, read_results
from scanbatch.models import ItemOutcome, Manifest, Status
from tests.imaging import image_bytes


def outcome(i, status=Status.COMPLETED):
    return ItemOutcome(item_index=i, status=status, finished_at=datetime.now(UTC))


def manifest(*counts):
    return Manifest.model_validate(
        {"items": [{"imageCount": c, "photoTypes": ["front"] * c} for c in counts]}
    )


def test_folder_holds_manifest_and_images_named_by_item_and_position(tmp_path):
    folder = JobFolder.for_job(tmp_path, "job-1")
    folder.create(manifest(2, 1))
    folder.write_image(0, 0, image_bytes("JPEG"))
    folder.write_image(0, 1, image_bytes("HEIF"))
    folder.write_image(1, 0, image_bytes("PNG"))
    names = sorted(p.name for p in folder.images_dir.iterdir())
    assert names == ["item00_0.jpg", "item00_1.heic", "item01_0.png"]
    assert json.loads(folder.manifest_path.read_text())["items"][0]["imageCount"] == 2
    photos = folder.photos(0, ["front", "back"])
    assert [(p.mime_type, p.photo_type) for p in photos] == [
        ("image/jpeg", "front"),
        ("image/heic", "back"),
    ]
    assert folder.read_manifest() == manifest(2, 1)


def test_results_are_appended_one_line_each(tmp_path):
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(outcome(1))
    writer.append(outcome(0, Status.FAILED))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["itemIndex"] for line in lines] == [1, 0]
    outcomes, offset = read_results(path)
    assert [o.status for o in outcomes] == [Status.COMPLETED, Status.FAILED]
    assert offset == path.stat().st_size


def test_torn_last_line_waits_until_it_is_whole(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultsWriter(path).append(outcome(0))
    whole = outcome(1).model_dump_json(by_alias=True) + "\n"
    with open(path, "a") as fh:
        fh.write(whole[:20])  # a writer died, or has not finished, mid-line
    outcomes, offset = read_results(path)
    assert [o.item_index for o in outcomes] == [0]
    with open(path, "a") as fh:
        fh.write(whole[20:])
    more, offset2 = read_results(path, offset)
    assert [o.item_index for o in more] == [1]
    assert offset2 == path.stat().st_size
    assert read_results(path, offset2) == ([], offset2)


def test_missing_results_file_reads_as_empty(tmp_path):
    assert read_results(tmp_path / "nope.jsonl", 0) == ([], 0)
