import json
from datetime import UTC, datetime
from pathlib import Path

from scanbatch.jobfolder import JobFolder, ResultsWriter, read_results
from scanbatch.models import ItemOutcome, Manifest, Status
from scanbatch.testing.imaging import image_bytes


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


def test_the_type_read_at_staging_is_recorded_and_never_read_again(tmp_path, monkeypatch):
    import scanbatch.jobfolder as jobfolder

    folder = JobFolder.for_job(tmp_path, "job-1")
    folder.create(manifest(2))
    folder.write_image(0, 0, image_bytes("JPEG"), "image/jpeg")  # as staged: type known
    folder.write_image(0, 1, image_bytes("HEIF"))  # bytes only: read here, once
    monkeypatch.setattr(jobfolder, "sniff_mime", None)  # a reader that sniffed would fail
    files = folder.photo_files(0)
    assert [(f.path.name, f.mime_type) for f in files] == [
        ("item00_0.jpg", "image/jpeg"),
        ("item00_1.heic", "image/heic"),
    ]
    assert [p.mime_type for p in folder.photos(0, ["front", "back"])] == [
        "image/jpeg",
        "image/heic",
    ]


def test_a_photo_named_by_hand_has_its_type_read_from_its_bytes(tmp_path):
    folder = JobFolder.for_job(tmp_path, "job-1")
    folder.create(manifest(1))
    (folder.images_dir / "item00_0.photo").write_bytes(image_bytes("PNG"))
    assert [f.mime_type for f in folder.photo_files(0)] == ["image/png"]


def test_outcomes_are_each_items_first_line_and_pending_the_rest(tmp_path):
    folder = JobFolder.for_job(tmp_path, "job-1")
    folder.create(manifest(1, 1, 1))
    assert folder.outcomes() == {} and folder.pending() == [0, 1, 2]
    writer = folder.results_writer()
    writer.append(outcome(2))
    writer.append(outcome(2, Status.FAILED))  # a run that raced a resumed one: ignored
    outcomes, offset = folder.new_outcomes()
    assert [o.item_index for o in outcomes] == [2, 2]
    assert folder.new_outcomes(offset) == ([], offset)
    writer.append(outcome(0))
    assert [o.item_index for o in folder.new_outcomes(offset)[0]] == [0]
    found = folder.outcomes()
    assert sorted(found) == [0, 2] and found[2].status == Status.COMPLETED
    assert folder.pending() == [1]


def test_every_file_of_a_job_folder_is_named_by_jobfolder_alone():
    """The names of a job folder's files are spelled in scanbatch/jobfolder.py and nowhere else
    in the package: every reader and writer asks a JobFolder for the path."""
    import ast

    import scanbatch
    import scanbatch.jobfolder as jobfolder

    names = {
        jobfolder.RESULTS,
        jobfolder.PID_FILE,
        jobfolder.NOTEBOOK_LOG,
        jobfolder.THUMBNAILS,
    }
    # Not a job folder's: the name experiment runs recorded before records.jsonl use.
    allowed = {("experiments/records.py", jobfolder.RESULTS)}
    package = Path(scanbatch.__file__).parent
    spelled = []
    for path in package.rglob("*.py"):
        if path.name == "jobfolder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = str(path.relative_to(package))
            if (
                isinstance(node, ast.Constant)
                and node.value in names
                and (where, node.value) not in allowed
            ):
                spelled.append(f"{path.relative_to(package)}:{node.lineno}: {node.value!r}")
    assert spelled == []
